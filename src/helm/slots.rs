//! Helm slots shared fairly between tenants: at most `total` helm runs at
//! once, at most `per_tenant` of them **rendering** for one tenant namespace,
//! and the requests that wait are served round-robin across tenants (first
//! come, first served within a tenant).
//!
//! ```text
//!  waiting:  paas-ws-a: [a1 a2 a3]   paas-ws-b: [b1]   paas-ws-c: [c1 c2]
//!  a slot frees → next tenant in turn that is under its cap gets its oldest
//!  request: a1, b1, c1, a2, c2, a3 … (a tenant at its cap is skipped)
//! ```
//!
//! Rendering is what a chart can make unbounded (each render is cut at the
//! render deadline), so a tenant whose charts render slowly (or never)
//! holds at most `per_tenant` slots, and another tenant's request gets the
//! next free one whatever is queued before it. Once a run has rendered
//! ([`Slot::rendering_done`]), or when it renders nothing (uninstall, an
//! apply of checked documents), it no longer counts against its tenant:
//! eight installs of one namespace still run side by side. A request that
//! waits longer than its bound gives up ([`Busy`]: the caller answers 503
//! `operator_busy`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

/// No slot became free in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// The slots; cheap to share (`Arc`).
#[derive(Debug)]
pub struct FairSlots {
    total: usize,
    per_tenant: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    /// Runs of each tenant still rendering.
    rendering: HashMap<String, usize>,
    waiting: HashMap<String, VecDeque<Waiter>>,
    /// Tenants with waiting requests, in the order they are served.
    turn: VecDeque<String>,
    next_id: u64,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    /// Will render (counts against the tenant's cap).
    renders: bool,
    grant: oneshot::Sender<Slot>,
}

/// One held slot; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Option<Arc<FairSlots>>,
    tenant: String,
    rendering: bool,
}

impl Slot {
    /// The tenant it was given to.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The run has rendered: it no longer counts against its tenant's cap.
    pub fn rendering_done(&mut self) {
        if !std::mem::replace(&mut self.rendering, false) {
            return;
        }
        if let Some(slots) = &self.slots {
            let mut state = slots.lock();
            state.done_rendering(&self.tenant);
            slots.dispatch(&mut state);
        }
    }
}

impl State {
    fn done_rendering(&mut self, tenant: &str) {
        if let Some(count) = self.rendering.get_mut(tenant) {
            *count -= 1;
            if *count == 0 {
                self.rendering.remove(tenant);
            }
        }
    }
}

impl FairSlots {
    /// `total` slots (at least one), at most `per_tenant` for one tenant
    /// (0: no cap but `total`).
    pub fn new(total: usize, per_tenant: usize) -> Arc<Self> {
        let total = total.max(1);
        let per_tenant = if per_tenant == 0 {
            total
        } else {
            per_tenant.min(total)
        };
        Arc::new(Self {
            total,
            per_tenant,
            state: Mutex::new(State {
                free: total,
                ..State::default()
            }),
        })
    }

    /// Slots in use now.
    pub fn in_use(&self) -> usize {
        self.total - self.lock().free
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.values().map(VecDeque::len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent between statements: a panic elsewhere
        // does not make it unusable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits up to `wait` for a slot for `tenant`, in its turn; one that
    /// `renders` also waits while its tenant has `per_tenant` rendering.
    pub async fn acquire(
        self: &Arc<Self>,
        tenant: &str,
        renders: bool,
        wait: Duration,
    ) -> Result<Slot, Busy> {
        let (grant, granted) = oneshot::channel();
        let id = {
            let mut state = self.lock();
            let id = state.next_id;
            state.next_id += 1;
            let queue = state.waiting.entry(tenant.to_owned()).or_default();
            queue.push_back(Waiter { id, renders, grant });
            if queue.len() == 1 && !state.turn.iter().any(|t| t == tenant) {
                state.turn.push_back(tenant.to_owned());
            }
            self.dispatch(&mut state);
            id
        };
        let mut granted = granted;
        match tokio::time::timeout(wait, &mut granted).await {
            Ok(Ok(slot)) => Ok(slot),
            Ok(Err(_)) => Err(Busy),
            Err(_) => {
                let mut state = self.lock();
                if let Some(queue) = state.waiting.get_mut(tenant) {
                    queue.retain(|waiter| waiter.id != id);
                }
                drop(state);
                // Granted just as the wait ran out: take it.
                granted.try_recv().map_err(|_| Busy)
            }
        }
    }

    /// Gives free slots to waiting requests, tenants in turn.
    fn dispatch(self: &Arc<Self>, state: &mut State) {
        while state.free > 0 {
            let mut granted = false;
            for _ in 0..state.turn.len() {
                let Some(tenant) = state.turn.pop_front() else {
                    break;
                };
                let rendering = state.rendering.get(&tenant).copied().unwrap_or(0);
                let queue = state.waiting.entry(tenant.clone()).or_default();
                // Requests whose caller went away are dropped here.
                while queue.front().is_some_and(|w| w.grant.is_closed()) {
                    queue.pop_front();
                }
                if queue.is_empty() {
                    state.waiting.remove(&tenant);
                    continue;
                }
                let renders = queue.front().is_some_and(|w| w.renders);
                if renders && rendering >= self.per_tenant {
                    state.turn.push_back(tenant);
                    continue;
                }
                let Some(waiter) = queue.pop_front() else {
                    continue;
                };
                let more = !queue.is_empty();
                let slot = Slot {
                    slots: Some(self.clone()),
                    tenant: tenant.clone(),
                    rendering: renders,
                };
                match waiter.grant.send(slot) {
                    Ok(()) => {
                        state.free -= 1;
                        if renders {
                            *state.rendering.entry(tenant.clone()).or_default() += 1;
                        }
                        granted = true;
                    }
                    Err(mut slot) => {
                        // Gone between the check and the send: nothing taken.
                        slot.slots = None;
                    }
                }
                if more {
                    state.turn.push_back(tenant);
                } else {
                    state.waiting.remove(&tenant);
                }
                if granted {
                    break;
                }
            }
            if !granted {
                return;
            }
        }
    }

    fn give_back(self: &Arc<Self>, tenant: &str, rendering: bool) {
        let mut state = self.lock();
        state.free += 1;
        if rendering {
            state.done_rendering(tenant);
        }
        self.dispatch(&mut state);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.give_back(&self.tenant, self.rendering);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(5);

    /// Starts a request of `tenant` that records its grant in `order`, and
    /// gives the slot back at once unless it is to `hold` it.
    fn request(
        slots: &Arc<FairSlots>,
        tenant: &'static str,
        order: &Arc<Mutex<Vec<&'static str>>>,
        hold: bool,
    ) -> tokio::task::JoinHandle<Result<Option<Slot>, Busy>> {
        let slots = slots.clone();
        let order = order.clone();
        tokio::spawn(async move {
            let slot = slots.acquire(tenant, true, LONG).await?;
            order.lock().unwrap().push(tenant);
            Ok(hold.then_some(slot))
        })
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn waiting_tenants_are_served_in_turn() {
        let slots = FairSlots::new(1, 0);
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = slots.acquire("a", true, LONG).await.expect("free slot");
        // Tenant a queues three, then b and c one each.
        let mut waiting = Vec::new();
        for tenant in ["a", "a", "a", "b", "c"] {
            waiting.push(request(&slots, tenant, &order, false));
            settle().await;
        }
        assert_eq!(slots.waiting(), 5);
        drop(first);
        for handle in waiting {
            handle.await.unwrap().expect("granted");
        }
        assert_eq!(*order.lock().unwrap(), ["a", "b", "c", "a", "a"]);
        assert_eq!(slots.in_use(), 0);
    }

    #[tokio::test]
    async fn a_tenant_at_its_cap_waits_while_others_get_slots() {
        let slots = FairSlots::new(4, 2);
        let a1 = slots.acquire("a", true, LONG).await.unwrap();
        let a2 = slots.acquire("a", true, LONG).await.unwrap();
        // A third for a waits although two slots are free…
        assert_eq!(
            slots
                .acquire("a", true, Duration::from_millis(50))
                .await
                .err(),
            Some(Busy)
        );
        // …and b gets them at once.
        let b1 = slots
            .acquire("b", true, Duration::from_millis(50))
            .await
            .unwrap();
        let b2 = slots
            .acquire("b", true, Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(slots.in_use(), 4);
        assert_eq!(b1.tenant(), "b");
        // a's next one runs when one of its own ends.
        let order = Arc::new(Mutex::new(Vec::new()));
        let a3 = request(&slots, "a", &order, true);
        settle().await;
        drop(b1);
        settle().await;
        assert!(order.lock().unwrap().is_empty(), "a is still at its cap");
        drop(a1);
        let a3 = a3.await.unwrap().expect("granted after a1").expect("held");
        assert_eq!(slots.in_use(), 3);
        drop((a2, a3, b2));
        assert_eq!(slots.in_use(), 0);
    }

    #[tokio::test]
    async fn only_rendering_counts_against_the_cap() {
        let slots = FairSlots::new(4, 1);
        let mut first = slots.acquire("a", true, LONG).await.unwrap();
        // A second render of a waits; an uninstall (no render) does not.
        assert_eq!(
            slots
                .acquire("a", true, Duration::from_millis(30))
                .await
                .err(),
            Some(Busy)
        );
        let uninstall = slots
            .acquire("a", false, Duration::from_millis(30))
            .await
            .unwrap();
        // Once the first has rendered, the next render of a runs.
        first.rendering_done();
        let second = slots
            .acquire("a", true, Duration::from_millis(30))
            .await
            .unwrap();
        assert_eq!(slots.in_use(), 3);
        drop((first, uninstall, second));
        assert_eq!(slots.in_use(), 0);
    }

    #[tokio::test]
    async fn a_request_that_gives_up_leaves_no_trace() {
        let slots = FairSlots::new(1, 1);
        let held = slots.acquire("a", true, LONG).await.unwrap();
        assert_eq!(
            slots
                .acquire("b", true, Duration::from_millis(20))
                .await
                .err(),
            Some(Busy)
        );
        // A caller that goes away while waiting (its future dropped).
        let gone = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire("c", true, LONG).await })
        };
        settle().await;
        gone.abort();
        let _ = gone.await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let d = request(&slots, "d", &order, true);
        settle().await;
        drop(held);
        // d gets the slot: the abandoned requests took none.
        let d = d.await.unwrap().expect("granted").expect("held");
        assert_eq!(d.tenant(), "d");
        assert_eq!(slots.in_use(), 1);
        drop(d);
        assert_eq!((slots.in_use(), slots.waiting()), (0, 0));
    }
}
