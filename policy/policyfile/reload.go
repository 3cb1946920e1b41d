package policyfile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/custodyagents/cosigner/policy"
)

// VersionStore keeps the versions across restarts, so that a restart does not cut a loosening's
// delay short (satisfied by an adapter over store.DB).
type VersionStore interface {
	// PutVersion records v as the newest version.
	PutVersion(ctx context.Context, v policy.Version) error
	// Versions returns every recorded version, oldest first.
	Versions(ctx context.Context) ([]policy.Version, error)
}

// Reloader holds the policy in force and reloads the file when it changes (hot reload). A file
// that does not load is refused with its line:column errors and the running policy is kept. A
// new file that only tightens (policy.Policy.LoosenedBy finds nothing) applies at once; one that
// loosens applies alone only after the loosen_delay of the policies in force it loosens (the
// longest), and until then it is in force together with them (see policy.Policy.WithPrior).
type Reloader struct {
	path  string
	opts  []policy.Option
	store VersionStore
	log   *slog.Logger
	now   func() time.Time
	poll  time.Duration

	mu      sync.Mutex // serialises reloads
	cur     atomic.Pointer[policy.Policy]
	refused string // hash of the last file refused (not reported again)
}

// NewReloader loads the policy at path, records it in vs and rebuilds the chain of policies still
// in force from vs. It fails if the file does not load (the daemon must not start without a
// policy). now may be nil (time.Now).
func NewReloader(ctx context.Context, path string, vs VersionStore, log *slog.Logger, now func() time.Time, opts ...policy.Option) (*Reloader, error) {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	r := &Reloader{path: path, opts: opts, store: vs, log: log.With("component", "policy"), now: now, poll: 5 * time.Second}
	if _, err := r.Reload(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Policy returns the policy in force (with its pending priors). Safe for concurrent use.
func (r *Reloader) Policy() *policy.Policy { return r.cur.Load() }

// Reload reads the file again. It returns whether a new version was taken, or the file's errors
// (the running policy is kept then; the same bad content is reported once).
func (r *Reloader) Reload(ctx context.Context) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, err := ReadFile(r.path)
	if err != nil {
		return false, err
	}
	hash := policy.HashBytes(data)
	if cur := r.cur.Load(); cur != nil && cur.Hash == hash {
		return false, nil
	}
	if hash == r.refused {
		return false, nil // already reported
	}
	next, err := policy.Parse(r.path, data, r.opts...)
	if err != nil {
		r.refused = hash
		return false, err
	}
	for _, d := range next.Deprecations() {
		r.log.Warn("policy: "+d, "file", r.path, "hash", hash)
	}
	versions, err := r.store.Versions(ctx)
	if err != nil {
		return false, err
	}
	now := r.now()
	if n := len(versions); n > 0 && versions[n-1].Hash == hash {
		// The file the daemon last saw (a restart): keep its recorded times.
		p, err := r.chain(versions, now)
		if err != nil {
			return false, err
		}
		r.cur.Store(p)
		return true, nil
	}
	v := policy.Version{Hash: hash, Name: r.path, Body: data, SeenAt: now, EffectiveAt: now}
	var prev *policy.Policy
	if cur := r.cur.Load(); cur != nil {
		prev = cur
	} else if len(versions) > 0 {
		if prev, err = r.chain(versions, now); err != nil {
			return false, err
		}
	}
	var loosen []string
	if prev != nil {
		var delay time.Duration
		loosen, delay = prev.LoosenedBy(next, now)
		v.EffectiveAt = now.Add(delay)
	}
	if err := r.store.PutVersion(ctx, v); err != nil {
		return false, err
	}
	p := next
	if prev != nil && v.EffectiveAt.After(now) {
		p = next.WithPrior(prev, v.EffectiveAt)
		r.log.Warn("policy loosened: the new file applies alone only after the loosen delay; until then the stricter decision wins",
			"hash", hash, "applies_alone_at", v.EffectiveAt.UTC().Format(time.RFC3339), "loosenings", loosen)
	} else {
		r.log.Info("policy loaded", "file", r.path, "hash", hash, "rules", len(next.Rules), "clients", len(next.Clients), "automations", len(next.Automations))
	}
	r.cur.Store(p)
	return true, nil
}

// chain rebuilds the policy in force from the recorded versions: the newest, with the versions
// before it as priors while their successors are not yet effective.
func (r *Reloader) chain(versions []policy.Version, now time.Time) (*policy.Policy, error) {
	n := len(versions)
	last, err := policy.Parse(versions[n-1].Name, versions[n-1].Body, r.opts...)
	if err != nil {
		return nil, fmt.Errorf("policy: recorded version %s no longer loads: %w", versions[n-1].Hash, err)
	}
	if n == 1 || !now.Before(versions[n-1].EffectiveAt) {
		return last, nil
	}
	prior, err := r.chain(versions[:n-1], now)
	if err != nil {
		r.log.Warn("an older policy version no longer loads; it is not kept in force", "error", err)
		return last, nil
	}
	return last.WithPrior(prior, versions[n-1].EffectiveAt), nil
}

// Run watches the file's directory (fsnotify; editors replace files by rename) and, as a
// fallback, polls the file every few seconds; each change is reloaded (Reload compares the
// content hash, so repeated events are harmless). A bad file is logged with its line:column
// errors and the running policy kept. Run returns nil when ctx ends.
func (r *Reloader) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if err == nil {
		defer w.Close()
		if err := w.Add(filepath.Dir(r.path)); err != nil {
			r.log.Warn("policy file not watched (polling only)", "error", err)
		} else {
			events, errs = w.Events, w.Errors
		}
	} else {
		r.log.Warn("policy file not watched (polling only)", "error", err)
	}
	t := time.NewTicker(r.poll)
	defer t.Stop()
	base := filepath.Base(r.path)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if filepath.Base(ev.Name) != base {
				continue
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			r.log.Warn("policy file watch", "error", err)
			continue
		case <-t.C:
		}
		if _, err := r.Reload(ctx); err != nil {
			var es policy.Errors
			if errors.As(err, &es) {
				r.log.Error("policy file refused; the running policy is kept", "errors", es.Error())
			} else {
				r.log.Error("policy file not reloaded; the running policy is kept", "error", err)
			}
		}
	}
}
