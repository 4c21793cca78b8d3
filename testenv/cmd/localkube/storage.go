// storage.go simulates a dynamic volume provisioner: it installs the default
// StorageClass "standard", creates a hostPath PersistentVolume for every
// pending claim of that class (the real PV controller then binds them), and
// deletes released volumes whose reclaim policy is Delete.
package main

import (
	"context"
	"path/filepath"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

const (
	storageClassName = "standard"
	provisionerName  = "localkube/fake"
	annProvisionedBy = "pv.kubernetes.io/provisioned-by"
	annDefaultClass  = "storageclass.kubernetes.io/is-default-class"
)

// provisioner is the simulated volume provisioner.
type provisioner struct {
	client  kubernetes.Interface
	rootDir string // hostPath volumes point below it (nothing is written)
	classes storagelisters.StorageClassLister
}

// ensureDefaultStorageClass creates the default StorageClass if missing.
func ensureDefaultStorageClass(ctx context.Context, client kubernetes.Interface) error {
	reclaim := v1.PersistentVolumeReclaimDelete
	binding := storagev1.VolumeBindingImmediate
	_, err := client.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: storageClassName, Annotations: map[string]string{annDefaultClass: "true"}},
		Provisioner:       provisionerName,
		ReclaimPolicy:     &reclaim,
		VolumeBindingMode: &binding,
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// Run provisions and cleans up volumes until ctx is cancelled.
func (p *provisioner) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(p.client, 0)
	p.classes = factory.Storage().V1().StorageClasses().Lister()
	pvcs := factory.Core().V1().PersistentVolumeClaims().Informer()
	pvs := factory.Core().V1().PersistentVolumes().Informer()
	onPVC := func(obj any) {
		if pvc, ok := obj.(*v1.PersistentVolumeClaim); ok {
			p.provision(ctx, pvc)
		}
	}
	onPV := func(obj any) {
		if pv, ok := obj.(*v1.PersistentVolume); ok {
			p.reclaim(ctx, pv)
		}
	}
	if _, err := pvcs.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onPVC, UpdateFunc: func(_, obj any) { onPVC(obj) },
	}); err != nil {
		return err
	}
	if _, err := pvs.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onPV, UpdateFunc: func(_, obj any) { onPV(obj) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	<-ctx.Done()
	factory.Shutdown()
	return nil
}

// provision creates a volume pre-bound to a pending claim of our class.
func (p *provisioner) provision(ctx context.Context, pvc *v1.PersistentVolumeClaim) {
	if pvc.Spec.VolumeName != "" || pvc.Status.Phase != v1.ClaimPending || pvc.DeletionTimestamp != nil {
		return
	}
	if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName == "" {
		return
	}
	class, err := p.classes.Get(*pvc.Spec.StorageClassName)
	if err != nil || class.Provisioner != provisionerName {
		return
	}
	size := resource.MustParse("1Gi")
	if q, ok := pvc.Spec.Resources.Requests[v1.ResourceStorage]; ok {
		size = q
	}
	modes := pvc.Spec.AccessModes
	if len(modes) == 0 {
		modes = []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce}
	}
	reclaim := v1.PersistentVolumeReclaimDelete
	if class.ReclaimPolicy != nil {
		reclaim = *class.ReclaimPolicy
	}
	name := "pvc-" + string(pvc.UID)
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{annProvisionedBy: provisionerName},
		},
		Spec: v1.PersistentVolumeSpec{
			Capacity:                      v1.ResourceList{v1.ResourceStorage: size},
			AccessModes:                   modes,
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              class.Name,
			VolumeMode:                    pvc.Spec.VolumeMode,
			ClaimRef: &v1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID,
			},
			PersistentVolumeSource: v1.PersistentVolumeSource{
				HostPath: &v1.HostPathVolumeSource{Path: filepath.Join(p.rootDir, name)},
			},
		},
	}
	if _, err := p.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		klog.ErrorS(err, "provisioner: create volume", "claim", pvc.Namespace+"/"+pvc.Name)
		return
	}
	klog.V(1).InfoS("provisioner: volume created", "claim", pvc.Namespace+"/"+pvc.Name, "volume", name)
}

// reclaim deletes our released volumes with reclaim policy Delete.
func (p *provisioner) reclaim(ctx context.Context, pv *v1.PersistentVolume) {
	if pv.Annotations[annProvisionedBy] != provisionerName || pv.DeletionTimestamp != nil ||
		pv.Status.Phase != v1.VolumeReleased || pv.Spec.PersistentVolumeReclaimPolicy != v1.PersistentVolumeReclaimDelete {
		return
	}
	err := p.client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		klog.ErrorS(err, "provisioner: delete released volume", "volume", pv.Name)
	}
}
