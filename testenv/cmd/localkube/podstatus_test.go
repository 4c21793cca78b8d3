package main

import (
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestBehaviourOf(t *testing.T) {
	cases := map[string]behaviour{
		"nginx:1.27":                          behaveNormal,
		"registry.local/app/crashloop:v1":     behaveCrashLoop,
		"example.com/CrashLoop-demo":          behaveCrashLoop,
		"example.com/imagepullfail:latest":    behaveImagePullFail,
		"imagepullfail-crashloop":             behaveImagePullFail, // pull failure wins: never starts
		"registry.local/crash-loop-not-quite": behaveNormal,
	}
	for image, want := range cases {
		if got := behaviourOf(image); got != want {
			t.Errorf("behaviourOf(%q) = %v, want %v", image, got, want)
		}
	}
}

func testPod(restart v1.RestartPolicy, images ...string) *v1.Pod {
	pod := &v1.Pod{Spec: v1.PodSpec{RestartPolicy: restart}}
	pod.Name, pod.Namespace, pod.UID = "p", "ns", "uid-1"
	for i, img := range images {
		pod.Spec.Containers = append(pod.Spec.Containers, v1.Container{Name: string(rune('a' + i)), Image: img})
	}
	return pod
}

func statusAt(pod *v1.Pod, after time.Duration) (v1.PodStatus, time.Duration) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return desiredStatus(pod, simInput{Started: start, Now: start.Add(after), PodIP: "10.244.0.2", HostIP: "10.0.0.10"})
}

func condition(st v1.PodStatus, t v1.PodConditionType) v1.ConditionStatus {
	for _, c := range st.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func TestNormalPodBecomesRunningAndReady(t *testing.T) {
	pod := testPod(v1.RestartPolicyAlways, "nginx")
	st, next := statusAt(pod, 0)
	if st.Phase != v1.PodPending || next != startDelay {
		t.Fatalf("at 0: phase %s next %s", st.Phase, next)
	}
	st, next = statusAt(pod, 3*time.Second)
	if st.Phase != v1.PodRunning || next != 0 || st.PodIP != "10.244.0.2" {
		t.Fatalf("at 3s: phase %s next %s ip %q", st.Phase, next, st.PodIP)
	}
	cs := st.ContainerStatuses[0]
	if !cs.Ready || cs.RestartCount != 0 || cs.State.Running == nil || cs.State.Running.StartedAt.IsZero() {
		t.Fatalf("container status %+v", cs)
	}
	for _, c := range []v1.PodConditionType{v1.PodScheduled, v1.PodInitialized, v1.ContainersReady, v1.PodReady} {
		if condition(st, c) != v1.ConditionTrue {
			t.Errorf("condition %s not true", c)
		}
	}
}

func TestRunToCompletionPodSucceeds(t *testing.T) {
	pod := testPod(v1.RestartPolicyNever, "busybox")
	st, next := statusAt(pod, startDelay)
	if st.Phase != v1.PodRunning || next != runToCompleted {
		t.Fatalf("running: phase %s next %s", st.Phase, next)
	}
	st, _ = statusAt(pod, startDelay+runToCompleted)
	if st.Phase != v1.PodSucceeded {
		t.Fatalf("phase %s, want Succeeded", st.Phase)
	}
	if term := st.ContainerStatuses[0].State.Terminated; term == nil || term.ExitCode != 0 {
		t.Fatalf("container not terminated with 0: %+v", st.ContainerStatuses[0].State)
	}
}

func TestCrashLoopRestartsRise(t *testing.T) {
	pod := testPod(v1.RestartPolicyAlways, "crashloop")
	st1, _ := statusAt(pod, startDelay+time.Second)
	st2, _ := statusAt(pod, startDelay+3*crashPeriod)
	c1, c2 := st1.ContainerStatuses[0], st2.ContainerStatuses[0]
	if c1.State.Waiting == nil || c1.State.Waiting.Reason != "CrashLoopBackOff" || c1.Ready {
		t.Fatalf("not in CrashLoopBackOff: %+v", c1)
	}
	if c1.LastTerminationState.Terminated == nil || c2.RestartCount <= c1.RestartCount {
		t.Fatalf("restart count did not rise: %d → %d", c1.RestartCount, c2.RestartCount)
	}
	if st2.Phase != v1.PodRunning || condition(st2, v1.PodReady) != v1.ConditionFalse {
		t.Fatalf("phase %s ready %s", st2.Phase, condition(st2, v1.PodReady))
	}
}

func TestImagePullFailStaysPending(t *testing.T) {
	pod := testPod(v1.RestartPolicyAlways, "imagepullfail")
	st, _ := statusAt(pod, startDelay)
	if st.Phase != v1.PodPending || st.ContainerStatuses[0].State.Waiting.Reason != "ErrImagePull" {
		t.Fatalf("phase %s state %+v", st.Phase, st.ContainerStatuses[0].State)
	}
	st, _ = statusAt(pod, time.Minute)
	if st.Phase != v1.PodPending || st.ContainerStatuses[0].State.Waiting.Reason != "ImagePullBackOff" {
		t.Fatalf("phase %s state %+v", st.Phase, st.ContainerStatuses[0].State)
	}
}

func TestInitContainersComplete(t *testing.T) {
	pod := testPod(v1.RestartPolicyAlways, "app")
	pod.Spec.InitContainers = []v1.Container{{Name: "init", Image: "busybox"}}
	st, _ := statusAt(pod, 2*time.Second)
	ic := st.InitContainerStatuses[0]
	if ic.State.Terminated == nil || ic.State.Terminated.Reason != "Completed" {
		t.Fatalf("init container %+v", ic)
	}
	if st.Phase != v1.PodRunning || condition(st, v1.PodInitialized) != v1.ConditionTrue {
		t.Fatalf("phase %s", st.Phase)
	}
}

func TestPodIPAnnotationGivesTheAskedAddress(t *testing.T) {
	k := &kubeletSim{ips: map[types.UID]string{}}
	asked := &v1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "a", Annotations: map[string]string{PodIPAnnotation: "192.0.2.2"}}}
	if got := k.podIP(asked); got != "192.0.2.2" {
		t.Fatalf("asked address: got %s", got)
	}
	plain := &v1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "b"}}
	if got := k.podIP(plain); !strings.HasPrefix(got, "10.244.") {
		t.Fatalf("allocated address: got %s", got)
	}
	junk := &v1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "c", Annotations: map[string]string{PodIPAnnotation: "not-an-ip"}}}
	if got := k.podIP(junk); !strings.HasPrefix(got, "10.244.") {
		t.Fatalf("a bad annotation is ignored: got %s", got)
	}
}
