package nodestatus

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/tabbynet/tabby/policy/api/v1alpha1"
)

// The resources the Reporter uses. The agent's RBAC (deploy/) grants exactly
// these verbs: tabbynodes get, create; tabbynodes/status update; nodes get.
var (
	TabbyNodes = v1alpha1.SchemeGroupVersion.WithResource("tabbynodes")
	Nodes      = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}
)

// FieldManager is the manager name of the agent's writes (managedFields).
const FieldManager = "tabby-agent"

// maxWriteAttempts bounds the conflict/recreate retries within one write; a
// write that still fails is retried with backoff.
const maxWriteAttempts = 3

func (r *Reporter) tabbyNodes() dynamic.ResourceInterface { return r.cfg.Client.Resource(TabbyNodes) }

// write makes the TabbyNode's status the one built from r.latest: it creates
// the object when it is missing and updates only the status subresource. A
// conflict (someone else wrote it) refetches; a deleted object is created
// again.
func (r *Reporter) write(ctx context.Context) error {
	var lastErr error
	for range maxWriteAttempts {
		if r.obj == nil {
			obj, err := r.getOrCreate(ctx)
			if err != nil {
				return err
			}
			r.obj = obj
		}
		prev, err := conditionsOf(r.obj)
		if err != nil {
			return err
		}
		st := buildStatus(prev, r.latest, r.cfg.Datastore, r.cfg.AgentVersion, metav1.NewTime(r.cfg.Clock.Now()))
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st)
		if err != nil {
			return fmt.Errorf("nodestatus: encoding the status: %w", err)
		}
		u := r.obj.DeepCopy()
		u.Object["status"] = m
		rctx, cancel := r.requestCtx(ctx)
		out, err := r.tabbyNodes().UpdateStatus(rctx, u, metav1.UpdateOptions{FieldManager: FieldManager})
		cancel()
		switch {
		case err == nil:
			r.obj, r.sent = out, &st
			return nil
		case apierrors.IsConflict(err):
			// Written since we read it (a user, the agent before a
			// restart): read it again and write on top.
			r.log.Debug("TabbyNode changed since it was read; reading it again", "error", err.Error())
		case apierrors.IsNotFound(err):
			r.log.Info("TabbyNode is gone (deleted); creating it again")
		default:
			return fmt.Errorf("nodestatus: updating the status of TabbyNode %s: %w", r.cfg.Node, err)
		}
		r.obj, lastErr = nil, err
	}
	return fmt.Errorf("nodestatus: TabbyNode %s: %d attempts in a row lost a race: %w", r.cfg.Node, maxWriteAttempts, lastErr)
}

// getOrCreate reads the TabbyNode, creating it (status empty: a create cannot
// set it) when it does not exist.
func (r *Reporter) getOrCreate(ctx context.Context) (*unstructured.Unstructured, error) {
	rctx, cancel := r.requestCtx(ctx)
	defer cancel()
	obj, err := r.tabbyNodes().Get(rctx, r.cfg.Node, metav1.GetOptions{})
	if err == nil {
		return obj, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("nodestatus: reading TabbyNode %s: %w", r.cfg.Node, err)
	}
	owner, err := r.owner(rctx)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(v1alpha1.SchemeGroupVersion.String())
	u.SetKind(v1alpha1.KindTabbyNode)
	u.SetName(r.cfg.Node)
	if owner != nil {
		u.SetOwnerReferences([]metav1.OwnerReference{*owner})
	}
	out, err := r.tabbyNodes().Create(rctx, u, metav1.CreateOptions{FieldManager: FieldManager})
	switch {
	case err == nil:
		r.log.Info("created TabbyNode", "owned_by_node", owner != nil)
		return out, nil
	case apierrors.IsAlreadyExists(err):
		// Created between our read and our create: use that one.
		obj, err := r.tabbyNodes().Get(rctx, r.cfg.Node, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("nodestatus: reading TabbyNode %s: %w", r.cfg.Node, err)
		}
		return obj, nil
	case apierrors.IsNotFound(err):
		// A create answered 404: the resource itself is not served.
		return nil, fmt.Errorf("nodestatus: creating TabbyNode %s: %w: %w", r.cfg.Node, ErrNotServed, err)
	default:
		return nil, fmt.Errorf("nodestatus: creating TabbyNode %s: %w", r.cfg.Node, err)
	}
}

// owner is the owner reference to the Node, so that the TabbyNode is
// garbage-collected with it. A Node that does not exist or may not be read
// gives nil (logged once): the status is still worth writing. Any other
// error is returned, so that a passing API problem does not leave a
// TabbyNode without its owner for good.
func (r *Reporter) owner(ctx context.Context) (*metav1.OwnerReference, error) {
	node, err := r.cfg.Client.Resource(Nodes).Get(ctx, r.cfg.Node, metav1.GetOptions{})
	switch {
	case err == nil:
		return &metav1.OwnerReference{APIVersion: "v1", Kind: "Node", Name: node.GetName(), UID: node.GetUID()}, nil
	case apierrors.IsNotFound(err), apierrors.IsForbidden(err):
		if !r.ownerWarned {
			r.ownerWarned = true
			r.log.Warn("cannot read the Node; creating the TabbyNode without an owner reference, so it is not deleted with the Node",
				"error", err.Error())
		}
		return nil, nil
	default:
		return nil, fmt.Errorf("nodestatus: reading Node %s for the owner reference: %w", r.cfg.Node, err)
	}
}

func fromUnstructured(u *unstructured.Unstructured, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into)
}
