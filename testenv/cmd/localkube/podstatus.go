// podstatus.go holds the pure logic of the kubelet simulator: which
// behaviour an image name asks for, and which PodStatus a pod should report
// at a given moment of its simulated life. No API calls happen here.
package main

import (
	"fmt"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// behaviour is what a simulated container does, chosen by its image name.
type behaviour int

const (
	// behaveNormal starts and keeps running (or exits 0 when the pod's
	// restartPolicy is Never/OnFailure, like a Job's pod).
	behaveNormal behaviour = iota
	// behaveCrashLoop exits 1 over and over: CrashLoopBackOff.
	behaveCrashLoop
	// behaveImagePullFail never starts: ErrImagePull, then ImagePullBackOff.
	behaveImagePullFail
)

// Timings of the simulation.
const (
	startDelay     = 1 * time.Second // bound → Running
	runToCompleted = 2 * time.Second // Running → Succeeded for run-to-completion pods
	crashPeriod    = 5 * time.Second // one restart per period in CrashLoopBackOff
	pullBackOff    = 5 * time.Second // ErrImagePull → ImagePullBackOff
)

// behaviourOf maps an image reference to a behaviour.
func behaviourOf(image string) behaviour {
	l := strings.ToLower(image)
	switch {
	case strings.Contains(l, "imagepullfail"):
		return behaveImagePullFail
	case strings.Contains(l, "crashloop"):
		return behaveCrashLoop
	default:
		return behaveNormal
	}
}

// simInput is everything desiredStatus needs besides the pod itself.
type simInput struct {
	Started time.Time // when the simulated kubelet accepted the pod
	Now     time.Time
	PodIP   string
	HostIP  string
}

// desiredStatus returns the status the pod should have at in.Now and how long
// until it next changes (0: not before something else changes).
func desiredStatus(pod *v1.Pod, in simInput) (v1.PodStatus, time.Duration) {
	elapsed := in.Now.Sub(in.Started)
	st := pod.Status.DeepCopy()
	st.HostIP = in.HostIP
	st.HostIPs = []v1.HostIP{{IP: in.HostIP}}
	start := metav1.NewTime(in.Started)
	st.StartTime = &start
	st.Message, st.Reason = "", ""

	if elapsed < startDelay {
		st.Phase = v1.PodPending
		st.InitContainerStatuses = containerStatuses(pod.Spec.InitContainers, func(c v1.Container) v1.ContainerState {
			return waiting("PodInitializing", "")
		})
		st.ContainerStatuses = containerStatuses(pod.Spec.Containers, func(c v1.Container) v1.ContainerState {
			return waiting("ContainerCreating", "")
		})
		st.Conditions = conditions(pod, false, false, false, "")
		return *st, startDelay - elapsed
	}

	running := in.Started.Add(startDelay)
	st.PodIP = in.PodIP
	st.PodIPs = []v1.PodIP{{IP: in.PodIP}}
	runToCompletion := pod.Spec.RestartPolicy == v1.RestartPolicyNever || pod.Spec.RestartPolicy == v1.RestartPolicyOnFailure

	// Init containers: blocked by a failing pull, otherwise completed at start
	// (restartable "sidecar" init containers keep running).
	initOK := true
	st.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		cs := v1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: imageID(c.Image), ContainerID: containerID(pod, c.Name)}
		switch {
		case !initOK:
			cs.State = waiting("PodInitializing", "")
			cs.ContainerID = ""
		case behaviourOf(c.Image) == behaveImagePullFail:
			cs.State = pullFailure(c.Image, elapsed-startDelay)
			cs.ContainerID, cs.ImageID = "", ""
			initOK = false
		case c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways:
			cs.State = v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: metav1.NewTime(running)}}
			cs.Ready, cs.Started = true, ptr(true)
		default:
			cs.State = v1.ContainerState{Terminated: &v1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: metav1.NewTime(running), FinishedAt: metav1.NewTime(running),
				ContainerID: cs.ContainerID}}
			cs.Ready, cs.Started = true, ptr(false)
		}
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
	}
	if !initOK {
		st.Phase = v1.PodPending
		st.ContainerStatuses = containerStatuses(pod.Spec.Containers, func(c v1.Container) v1.ContainerState {
			return waiting("PodInitializing", "")
		})
		st.Conditions = conditions(pod, true, false, false, "")
		return *st, nextPullChange(elapsed - startDelay)
	}

	var next time.Duration
	allReady, anyPending, anyFailed, allDone := true, false, false, true
	st.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		cs := v1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: imageID(c.Image), ContainerID: containerID(pod, c.Name), Started: ptr(false)}
		switch behaviourOf(c.Image) {
		case behaveImagePullFail:
			cs.State = pullFailure(c.Image, elapsed-startDelay)
			cs.ContainerID, cs.ImageID = "", ""
			anyPending, allDone = true, false
			next = minPositive(next, nextPullChange(elapsed-startDelay))
		case behaveCrashLoop:
			if pod.Spec.RestartPolicy == v1.RestartPolicyNever {
				cs.State = v1.ContainerState{Terminated: &v1.ContainerStateTerminated{
					ExitCode: 1, Reason: "Error", StartedAt: metav1.NewTime(running), FinishedAt: metav1.NewTime(running),
					ContainerID: cs.ContainerID}}
				anyFailed = true
				break
			}
			n := int(elapsed-startDelay)/int(crashPeriod) + 1
			lastCrash := running.Add(time.Duration(n-1) * crashPeriod)
			cs.RestartCount = int32(n)
			cs.State = waiting("CrashLoopBackOff",
				fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", crashPeriod, c.Name, pod.Name, pod.Namespace, pod.UID))
			cs.LastTerminationState = v1.ContainerState{Terminated: &v1.ContainerStateTerminated{
				ExitCode: 1, Reason: "Error", StartedAt: metav1.NewTime(lastCrash), FinishedAt: metav1.NewTime(lastCrash),
				ContainerID: cs.ContainerID}}
			allDone = false
			next = minPositive(next, running.Add(time.Duration(n)*crashPeriod).Sub(in.Now))
		default:
			if runToCompletion && elapsed >= startDelay+runToCompleted {
				done := running.Add(runToCompleted)
				cs.State = v1.ContainerState{Terminated: &v1.ContainerStateTerminated{
					ExitCode: 0, Reason: "Completed", StartedAt: metav1.NewTime(running), FinishedAt: metav1.NewTime(done),
					ContainerID: cs.ContainerID}}
				break
			}
			cs.State = v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: metav1.NewTime(running)}}
			cs.Ready, cs.Started = true, ptr(true)
			allDone = false
			if runToCompletion {
				next = minPositive(next, startDelay+runToCompleted-elapsed)
			}
		}
		allReady = allReady && cs.Ready
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}

	switch {
	case anyPending:
		st.Phase = v1.PodPending
	case allDone && anyFailed:
		st.Phase = v1.PodFailed
	case allDone && runToCompletion:
		st.Phase = v1.PodSucceeded
	default:
		st.Phase = v1.PodRunning
	}
	notReadyReason := "ContainersNotReady"
	if st.Phase == v1.PodSucceeded || st.Phase == v1.PodFailed {
		notReadyReason = "PodCompleted"
		next = 0
	}
	st.Conditions = conditions(pod, true, true, allReady, notReadyReason)
	return *st, next
}

// conditions builds the standard pod conditions; transition times are fixed
// up by the caller so unchanged conditions keep theirs.
func conditions(pod *v1.Pod, sandbox, initialized, ready bool, notReadyReason string) []v1.PodCondition {
	c := func(t v1.PodConditionType, ok bool, reason string) v1.PodCondition {
		cond := v1.PodCondition{Type: t, Status: v1.ConditionFalse, Reason: reason}
		if ok {
			cond.Status, cond.Reason = v1.ConditionTrue, ""
		}
		return cond
	}
	return []v1.PodCondition{
		c(v1.PodReadyToStartContainers, sandbox, ""),
		c(v1.PodInitialized, initialized, "ContainersNotInitialized"),
		c(v1.ContainersReady, ready, notReadyReason),
		c(v1.PodReady, ready, notReadyReason),
		c(v1.PodScheduled, true, ""),
	}
}

func containerStatuses(cs []v1.Container, state func(v1.Container) v1.ContainerState) []v1.ContainerStatus {
	var out []v1.ContainerStatus
	for _, c := range cs {
		out = append(out, v1.ContainerStatus{Name: c.Name, Image: c.Image, State: state(c), Started: ptr(false)})
	}
	return out
}

func waiting(reason, message string) v1.ContainerState {
	return v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: reason, Message: message}}
}

// pullFailure is ErrImagePull for the first attempt, ImagePullBackOff after.
func pullFailure(image string, sinceStart time.Duration) v1.ContainerState {
	if sinceStart < pullBackOff {
		return waiting("ErrImagePull", fmt.Sprintf("failed to pull image %q: simulated pull failure (localkube)", image))
	}
	return waiting("ImagePullBackOff", fmt.Sprintf("Back-off pulling image %q", image))
}

func nextPullChange(sinceStart time.Duration) time.Duration {
	if sinceStart < pullBackOff {
		return pullBackOff - sinceStart
	}
	return 0
}

func containerID(pod *v1.Pod, name string) string {
	return fmt.Sprintf("localkube://%s-%s", pod.UID, name)
}

func imageID(image string) string { return "localkube://" + image }

func minPositive(a, b time.Duration) time.Duration {
	if b <= 0 {
		return a
	}
	if a <= 0 || b < a {
		return b
	}
	return a
}

func ptr[T any](v T) *T { return &v }
