package kubestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/tabbynet/tabby/policy/store"
)

// DefaultRecheckInterval is how often an API that is not served is looked
// for again.
const DefaultRecheckInterval = 30 * time.Second

// Errors the reported problems wrap (errors.Is).
var (
	// ErrNotInstalled: the API server does not serve a resource (its CRD is
	// not installed); the resource is not watched until it is.
	ErrNotInstalled = errors.New("not installed")
	// ErrForbidden: RBAC does not let the agent list a resource.
	ErrForbidden = errors.New("forbidden")
)

// Config configures a Store.
type Config struct {
	REST *rest.Config // required
	// Node is the agent's node: pods with spec.nodeName == Node are local.
	// Required. The store delivers every pod alike (remote pods carry the
	// labels, addresses and ports that selectors and named ports need); the
	// node names the store in logs.
	Node   string
	Logger *slog.Logger // default slog.Default()
	// RecheckInterval: how often an API that is not served (a CRD not
	// installed) is looked for again. Default DefaultRecheckInterval.
	RecheckInterval time.Duration
}

// Store is the Kubernetes datastore: see the package documentation.
type Store struct {
	cfg Config
	c   *clients
	log *slog.Logger
	res []*resource

	// syncPoll is how often Run checks whether every informer has synced.
	syncPoll time.Duration

	mu      sync.Mutex
	h       store.Handler // set during Run; every Handler call is made under mu
	running bool
}

// discoveryTimeout bounds one discovery request, so that a black-holed API
// server delays the next recheck rather than stopping it.
const discoveryTimeout = 15 * time.Second

// New validates cfg and builds the API clients. It does no network I/O.
func New(cfg Config) (*Store, error) {
	if cfg.REST == nil {
		return nil, errors.New("kubestore: Config.REST is required")
	}
	if cfg.Node == "" {
		return nil, errors.New("kubestore: Config.Node is required")
	}
	if msgs := validation.IsDNS1123Subdomain(cfg.Node); len(msgs) > 0 {
		return nil, fmt.Errorf("kubestore: node name %q: %v", cfg.Node, msgs)
	}
	if cfg.RecheckInterval < 0 {
		return nil, fmt.Errorf("kubestore: RecheckInterval %v is negative", cfg.RecheckInterval)
	}
	base := rest.CopyConfig(cfg.REST)
	if base.UserAgent == "" {
		base.UserAgent = "tabby-agent/" + cfg.Node
	}
	// Core and networking kinds in protobuf: far cheaper to decode than JSON
	// for thousands of pods. CRDs (CNP, tabby.dev) only speak JSON.
	coreCfg := rest.CopyConfig(base)
	if coreCfg.ContentType == "" {
		coreCfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
		coreCfg.ContentType = "application/vnd.kubernetes.protobuf"
	}
	core, err := kubernetes.NewForConfig(coreCfg)
	if err != nil {
		return nil, fmt.Errorf("kubestore: %w", err)
	}
	cnp, err := cnpclient.NewForConfig(base)
	if err != nil {
		return nil, fmt.Errorf("kubestore: %w", err)
	}
	dyn, err := dynamic.NewForConfig(base)
	if err != nil {
		return nil, fmt.Errorf("kubestore: %w", err)
	}
	discCfg := rest.CopyConfig(base)
	discCfg.Timeout = discoveryTimeout // never on the others: it would cut watches
	disc, err := discovery.NewDiscoveryClientForConfig(discCfg)
	if err != nil {
		return nil, fmt.Errorf("kubestore: %w", err)
	}
	return newStore(cfg, &clients{core: core, cnp: cnp, dyn: dyn, discover: restDiscover(disc)}), nil
}

// restDiscover asks the API server which resources it serves in one group
// version, as discovery.ServerResourcesForGroupVersion does but with a
// context, so that Run's end cancels it.
func restDiscover(d *discovery.DiscoveryClient) func(context.Context, string) (*metav1.APIResourceList, error) {
	return func(ctx context.Context, gv string) (*metav1.APIResourceList, error) {
		path := "/apis/" + gv
		if gv == "v1" {
			path = "/api/v1"
		}
		l := &metav1.APIResourceList{}
		if err := d.RESTClient().Get().AbsPath(path).Do(ctx).Into(l); err != nil {
			return nil, err
		}
		return l, nil
	}
}

func newStore(cfg Config, c *clients) *Store {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RecheckInterval == 0 {
		cfg.RecheckInterval = DefaultRecheckInterval
	}
	return &Store{
		cfg: cfg, c: c, res: resources(), syncPoll: 50 * time.Millisecond,
		log: cfg.Logger.With("datastore", "kubernetes", "node", cfg.Node),
	}
}

// withHandler runs f with the handler under the store's lock, so that
// Handler calls from the informers' goroutines come one at a time; it does
// nothing outside Run.
func (s *Store) withHandler(f func(store.Handler)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h != nil {
		f(s.h)
	}
}

// Run implements store.Datastore: it starts an informer per served resource,
// delivers their objects, calls Synced once every started informer has
// delivered its initial list and every optional API has been found or found
// missing, and keeps looking for missing APIs every RecheckInterval. It
// returns nil when ctx ends, after the informers have stopped.
func (s *Store) Run(ctx context.Context, h store.Handler) error {
	if h == nil {
		return errors.New("kubestore: Run needs a Handler")
	}
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("kubestore: Run is already running")
	}
	s.running, s.h = true, h
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		s.mu.Lock()
		s.running, s.h = false, nil
		s.mu.Unlock()
	}()

	ws := make([]*watched, len(s.res))
	s.mu.Lock()
	for i, r := range s.res {
		ws[i] = newWatched(s, r)
		if !r.optional {
			if err := ws[i].start(ctx, &wg); err != nil {
				s.mu.Unlock()
				return err
			}
		}
	}
	s.mu.Unlock()
	s.log.Info("watching the Kubernetes API")

	recheck := time.NewTimer(0)
	defer recheck.Stop()
	syncTick := time.NewTicker(s.syncPoll)
	defer syncTick.Stop()
	syncC := syncTick.C
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-recheck.C:
			if d := s.discover(ctx, ws, &wg, &failures); d > 0 {
				recheck.Reset(d)
			}
		case <-syncC:
			if s.trySynced(ws) {
				syncTick.Stop()
				syncC = nil
			}
		}
	}
}

// trySynced calls Synced if every resource has synced, and reports whether
// it did.
func (s *Store) trySynced(ws []*watched) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range ws {
		if !w.synced() {
			return false
		}
	}
	s.log.Info("initial list delivered")
	s.h.Synced()
	return true
}

// discover looks up the optional resources whose informer is not running:
// it starts those now served and reports the others. It returns when to
// look again: RecheckInterval while one is missing, sooner (backing off)
// after a discovery failure, 0 when all run.
func (s *Store) discover(ctx context.Context, ws []*watched, wg *sync.WaitGroup, failures *int) time.Duration {
	pending := map[string][]*watched{}
	var gvs []string
	for _, w := range ws {
		s.mu.Lock()
		state := w.state
		s.mu.Unlock()
		if state == apiWatched {
			continue
		}
		gv := w.res.gvr.GroupVersion().String()
		if pending[gv] == nil {
			gvs = append(gvs, gv)
		}
		pending[gv] = append(pending[gv], w)
	}
	if len(gvs) == 0 {
		return 0
	}
	failed := false
	for _, gv := range gvs {
		rctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
		list, err := s.c.discover(rctx, gv)
		cancel()
		if ctx.Err() != nil {
			return 0
		}
		if err != nil && !apierrors.IsNotFound(err) {
			failed = true
		}
		s.applyDiscovery(ctx, wg, pending[gv], list, err)
	}
	if !failed {
		*failures = 0
		return s.cfg.RecheckInterval
	}
	*failures++
	return min(time.Second<<min(*failures-1, 10), s.cfg.RecheckInterval)
}

// applyDiscovery acts on one group version's discovery answer.
func (s *Store) applyDiscovery(ctx context.Context, wg *sync.WaitGroup, ws []*watched, list *metav1.APIResourceList, err error) {
	served := map[string]bool{}
	if err == nil {
		for _, r := range list.APIResources {
			served[r.Name] = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h == nil {
		return
	}
	for _, w := range ws {
		gv := w.res.gvr.GroupVersion()
		switch {
		case err != nil && !apierrors.IsNotFound(err):
			// Unknown: not served would loosen enforcement if it is, so the
			// initial sync waits for an answer.
			w.setAPIProblem(s.h, fmt.Errorf("%s: cannot ask the API server whether it serves %s; retrying: %w",
				w.src.File, gv, err))
		case served[w.res.gvr.Resource]:
			if err := w.start(ctx, wg); err != nil {
				w.setAPIProblem(s.h, err)
				continue
			}
			s.log.Info("API served: watching it", "resource", w.src.File)
			w.setAPIProblem(s.h, nil)
		default:
			if w.state != apiNotServed {
				s.log.Warn("API not served: not watched", "resource", w.src.File, "recheck", s.cfg.RecheckInterval)
			}
			w.state = apiNotServed
			w.setAPIProblem(s.h, fmt.Errorf("%s: %w: the API server does not serve %s %s, so those objects are not watched; "+
				"looking again every %s", w.src.File, ErrNotInstalled, gv, w.res.gvr.Resource, s.cfg.RecheckInterval))
		}
	}
}
