// kubelet.go is the kubelet simulator: it registers one Ready node, keeps its
// Lease and status heartbeats fresh, reports simulated status for the pods
// bound to it (see podstatus.go) and finishes their deletion, as a kubelet
// would after stopping the containers. Nothing is actually run.
package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"paas-operator/testenv/internal/kubeversion"
)

const (
	nodeName        = "localkube-node"
	nodeIP          = "10.0.0.10"
	leaseDuration   = 40 // seconds
	leaseRenewEvery = 10 * time.Second
	nodeStatusEvery = 20 * time.Second
	podWorkers      = 4
)

// kubeletSim simulates the kubelet of a single node.
type kubeletSim struct {
	client      kubernetes.Interface
	kubeletPort int // port of kubeletserver.go, reached via the Hostname address
	queue       workqueue.TypedRateLimitingInterface[string]
	pods        corelisters.PodLister

	mu     sync.Mutex
	nextIP int
	ips    map[types.UID]string
}

func newKubeletSim(client kubernetes.Interface, kubeletPort int) *kubeletSim {
	return &kubeletSim{
		client:      client,
		kubeletPort: kubeletPort,
		queue:       workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		ips:         map[types.UID]string{},
	}
}

// Run registers the node and simulates it until ctx is cancelled.
func (k *kubeletSim) Run(ctx context.Context) error {
	if err := k.registerNode(ctx); err != nil {
		return fmt.Errorf("register node: %w", err)
	}
	go k.heartbeat(ctx)

	factory := informers.NewSharedInformerFactoryWithOptions(k.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", nodeName).String()
		}))
	podInformer := factory.Core().V1().Pods()
	k.pods = podInformer.Lister()
	enqueue := func(obj any) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			k.queue.Add(key)
		}
	}
	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if pod, ok := obj.(*v1.Pod); ok {
				k.releaseIP(pod.UID)
			}
		},
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())

	defer k.queue.ShutDown()
	for range podWorkers {
		go func() {
			for k.processNext(ctx) {
			}
		}()
	}
	<-ctx.Done()
	return nil
}

func (k *kubeletSim) processNext(ctx context.Context) bool {
	key, quit := k.queue.Get()
	if quit {
		return false
	}
	defer k.queue.Done(key)
	requeue, err := k.syncPod(ctx, key)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			klog.V(2).InfoS("kubelet-sim: sync failed, retrying", "pod", key, "err", err)
		}
		k.queue.AddRateLimited(key)
	default:
		k.queue.Forget(key)
		if requeue > 0 {
			k.queue.AddAfter(key, requeue)
		}
	}
	return true
}

// syncPod moves one pod towards its simulated status.
func (k *kubeletSim) syncPod(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	pod, err := k.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	if pod.DeletionTimestamp != nil {
		// The containers are "stopped": finish the graceful deletion.
		err := k.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr(int64(0)),
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return 0, nil
		}
		return 0, err
	}
	if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		return 0, nil
	}

	now := time.Now()
	started := now.Truncate(time.Second)
	if pod.Status.StartTime != nil {
		started = pod.Status.StartTime.Time
	}
	podIP := nodeIP
	if !pod.Spec.HostNetwork {
		podIP = k.podIP(pod)
	}
	status, next := desiredStatus(pod, simInput{Started: started, Now: now, PodIP: podIP, HostIP: nodeIP})
	keepTransitionTimes(&status, pod.Status.Conditions, now)
	if equality.Semantic.DeepEqual(status, pod.Status) {
		return next, nil
	}
	updated := pod.DeepCopy()
	updated.Status = status
	if _, err := k.client.CoreV1().Pods(ns).UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, err
	}
	return next, nil
}

// keepTransitionTimes keeps the transition time of conditions whose status did
// not change and stamps the others with now.
func keepTransitionTimes(st *v1.PodStatus, old []v1.PodCondition, now time.Time) {
	for i := range st.Conditions {
		c := &st.Conditions[i]
		c.LastTransitionTime = metav1.NewTime(now.Truncate(time.Second))
		for _, o := range old {
			if o.Type == c.Type && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
				c.LastProbeTime = o.LastProbeTime
			}
		}
	}
}

// PodIPAnnotation lets a test give a pod an address of this machine, where
// the test runs the pod's real program (this kubelet runs no containers):
// the endpoints controller then lists it, and the API server's service
// proxy (which only proxies to pod addresses) reaches that program.
const PodIPAnnotation = "localkube.testenv/pod-ip"

// podIP returns the pod's IP: the one its PodIPAnnotation asks for, or one
// allocated from 10.244.0.0/16.
func (k *kubeletSim) podIP(pod *v1.Pod) string {
	if ip := net.ParseIP(pod.Annotations[PodIPAnnotation]); ip != nil && ip.To4() != nil {
		return ip.String()
	}
	if pod.Status.PodIP != "" {
		return pod.Status.PodIP
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if ip, ok := k.ips[pod.UID]; ok {
		return ip
	}
	n := k.nextIP
	k.nextIP = (k.nextIP + 1) % (250 * 250)
	ip := fmt.Sprintf("10.244.%d.%d", n/250, n%250+2)
	k.ips[pod.UID] = ip
	return ip
}

func (k *kubeletSim) releaseIP(uid types.UID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.ips, uid)
}

// registerNode creates the node (or takes over an existing one) and marks it Ready.
func (k *kubeletSim) registerNode(ctx context.Context) error {
	node := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: nodeName,
			Labels: map[string]string{
				"kubernetes.io/hostname": nodeName,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "localkube",
			},
		},
	}
	_, err := k.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := k.updateNodeStatus(ctx); err != nil {
		return err
	}
	return k.renewLease(ctx)
}

func (k *kubeletSim) updateNodeStatus(ctx context.Context) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := k.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		node.Status = nodeStatus(node.Status, time.Now(), k.kubeletPort)
		_, err = k.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
}

// nodeStatus is the status of a healthy node with 8 CPUs, 16Gi and 110 pods.
// The apiserver prefers the Hostname address for kubelet connections, so
// "localhost" leads `kubectl logs` to kubeletserver.go on kubeletPort.
func nodeStatus(old v1.NodeStatus, now time.Time, kubeletPort int) v1.NodeStatus {
	capacity := v1.ResourceList{
		v1.ResourceCPU:              resource.MustParse("8"),
		v1.ResourceMemory:           resource.MustParse("16Gi"),
		v1.ResourcePods:             resource.MustParse("110"),
		v1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	}
	heartbeat := metav1.NewTime(now)
	cond := func(t v1.NodeConditionType, s v1.ConditionStatus, reason, msg string) v1.NodeCondition {
		c := v1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg,
			LastHeartbeatTime: heartbeat, LastTransitionTime: heartbeat}
		for _, o := range old.Conditions {
			if o.Type == t && o.Status == s {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		return c
	}
	return v1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       v1.NodeRunning,
		Conditions: []v1.NodeCondition{
			cond(v1.NodeMemoryPressure, v1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
			cond(v1.NodeDiskPressure, v1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
			cond(v1.NodePIDPressure, v1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
			cond(v1.NodeReady, v1.ConditionTrue, "KubeletReady", "localkube simulated kubelet is ready"),
		},
		Addresses: []v1.NodeAddress{
			{Type: v1.NodeInternalIP, Address: nodeIP},
			{Type: v1.NodeHostName, Address: "localhost"},
		},
		DaemonEndpoints: v1.NodeDaemonEndpoints{KubeletEndpoint: v1.DaemonEndpoint{Port: int32(kubeletPort)}},
		NodeInfo: v1.NodeSystemInfo{
			MachineID: "localkube", SystemUUID: "localkube", BootID: "localkube",
			KernelVersion: "localkube", OSImage: "localkube simulated node",
			ContainerRuntimeVersion: "localkube://0.1", KubeletVersion: kubeversion.Version + "-localkube",
			OperatingSystem: "linux", Architecture: "amd64",
		},
	}
}

// renewLease creates or renews the node's Lease in kube-node-lease.
func (k *kubeletSim) renewLease(ctx context.Context) error {
	leases := k.client.CoordinationV1().Leases(v1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	lease, err := leases.Get(ctx, nodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		node, err := k.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Name: nodeName,
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion: "v1", Kind: "Node", Name: nodeName, UID: node.UID,
				}},
			},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr(nodeName),
				LeaseDurationSeconds: ptr(int32(leaseDuration)),
				RenewTime:            &now,
			},
		}, metav1.CreateOptions{})
		return err
	} else if err != nil {
		return err
	}
	lease.Spec.RenewTime = &now
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	return err
}

// heartbeat keeps the lease and node status fresh so the node lifecycle
// controller never taints the node.
func (k *kubeletSim) heartbeat(ctx context.Context) {
	leaseTick := time.NewTicker(leaseRenewEvery)
	defer leaseTick.Stop()
	statusTick := time.NewTicker(nodeStatusEvery)
	defer statusTick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-leaseTick.C:
			if err := k.renewLease(ctx); err != nil && ctx.Err() == nil {
				klog.ErrorS(err, "kubelet-sim: renew lease")
			}
		case <-statusTick.C:
			if err := k.updateNodeStatus(ctx); err != nil && ctx.Err() == nil {
				klog.ErrorS(err, "kubelet-sim: update node status")
			}
		}
	}
}
