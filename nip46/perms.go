package nip46

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Permissions of a NIP-46 client, written as in NIP-46 ("Permissions": `method[:param]`,
// comma-separated, e.g. "nip44_encrypt,sign_event:4"). For sign_event the param is an event kind;
// "sign_event" without a kind allows every kind except 24133 (NIP-46 itself), which must be named
// ("sign_event:24133") because a signed kind-24133 event from this key could pose as one of our
// responses to another client.
//
// Methods that only manage the session (connect, ping, get_public_key, switch_relays, logout)
// need no permission; every other method does.

// DefaultPerms is what a bunker:// secret grants when it was created without --perms: the
// Bitcoin co-signer methods, nothing that signs Nostr events or decrypts for the client.
const DefaultPerms = "sign_psbt,get_wallet,psbt_status"

// sessionMethods are answered for any connected client without a permission.
var sessionMethods = []string{MethodConnect, MethodPing, MethodGetPublicKey, MethodSwitchRelays, MethodLogout}

// NeedsPermission reports whether method is gated by the client's permissions.
func NeedsPermission(method string) bool { return !slices.Contains(sessionMethods, method) }

// Perm is one permission: a method and, for sign_event, an optional event kind (Kind < 0: any
// kind but 24133).
type Perm struct {
	Method string
	Kind   int
}

func (p Perm) String() string {
	if p.Kind >= 0 {
		return p.Method + ":" + strconv.Itoa(p.Kind)
	}
	return p.Method
}

// Perms is a set of permissions in canonical order (sorted, no duplicates, a kind-less
// sign_event absorbs the kinds it covers). Build it with ParsePerms.
type Perms []Perm

// MaxPerms bounds how many permissions one string may list.
const MaxPerms = 64

// ParsePerms parses "method[:param],…" (NIP-46). Method names are lower-case letters, digits and
// '_' (at most 32); sign_event takes an optional kind 0..65535; other methods take no param.
// Empty entries are skipped. Errors: ErrBadPerms wrapped with the offending entry.
func ParsePerms(s string) (Perms, error) {
	var out Perms
	n := 0
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if n++; n > MaxPerms {
			return nil, fmt.Errorf("%w: more than %d entries", ErrBadPerms, MaxPerms)
		}
		method, param, hasParam := strings.Cut(item, ":")
		if !validMethodName(method) {
			return nil, fmt.Errorf("%w: %q is not a method name", ErrBadPerms, truncate(item, 40))
		}
		p := Perm{Method: method, Kind: -1}
		if hasParam {
			if method != MethodSignEvent {
				return nil, fmt.Errorf("%w: %q: only sign_event takes a parameter (an event kind)", ErrBadPerms, truncate(item, 40))
			}
			k, err := strconv.Atoi(param)
			if err != nil || k < 0 || k > 65535 || strconv.Itoa(k) != param {
				return nil, fmt.Errorf("%w: %q: the kind must be an integer 0..65535", ErrBadPerms, truncate(item, 40))
			}
			p.Kind = k
		}
		out = append(out, p)
	}
	return canonical(out), nil
}

// MustParsePerms is ParsePerms for constants; it panics on a malformed string.
func MustParsePerms(s string) Perms {
	p, err := ParsePerms(s)
	if err != nil {
		panic(err)
	}
	return p
}

func validMethodName(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for _, c := range m {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func canonical(ps Perms) Perms {
	anyKind := map[string]bool{}
	for _, p := range ps {
		if p.Kind < 0 {
			anyKind[p.Method] = true
		}
	}
	var out Perms
	for _, p := range ps {
		if p.Kind >= 0 && anyKind[p.Method] && !(p.Method == MethodSignEvent && p.Kind == KindNostrConnect) {
			continue
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Perm) int {
		if c := strings.Compare(a.Method, b.Method); c != 0 {
			return c
		}
		return a.Kind - b.Kind
	})
	return slices.Compact(out)
}

// String is the canonical "method[:kind],…" form (stored in SQLite and shown by
// `cosigner clients list`).
func (ps Perms) String() string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// Allows reports whether ps lets a client call method; kind is the event kind for sign_event
// (ignored otherwise). Session methods are always allowed.
func (ps Perms) Allows(method string, kind int) bool {
	if !NeedsPermission(method) {
		return true
	}
	for _, p := range ps {
		if p.Method != method {
			continue
		}
		if method != MethodSignEvent || p.Kind == kind || (p.Kind < 0 && kind != KindNostrConnect) {
			return true
		}
	}
	return false
}

// covers reports whether a covers b (a grants at least what b asks).
func covers(a, b Perm) bool {
	if a.Method != b.Method {
		return false
	}
	if a.Kind == b.Kind {
		return true
	}
	return a.Kind < 0 && b.Kind != KindNostrConnect
}

// Intersect returns what both ps and other allow: the grant for a client that asked for other
// from a secret created with ps. A kind-less entry meets a kinded one as the kinded one.
func (ps Perms) Intersect(other Perms) Perms {
	var out Perms
	for _, a := range ps {
		for _, b := range other {
			switch {
			case covers(a, b):
				out = append(out, b)
			case covers(b, a):
				out = append(out, a)
			}
		}
	}
	return canonical(out)
}

// Union returns everything ps or other allow (`cosigner clients grant`).
func (ps Perms) Union(other Perms) Perms {
	return canonical(append(slices.Clone(ps), other...))
}

// Without returns ps minus what other names (`cosigner clients revoke`): an entry is removed
// when other names it exactly or covers it; revoking one kind from a kind-less sign_event is
// refused with ErrBadPerms because the remaining set cannot be written as a list.
func (ps Perms) Without(other Perms) (Perms, error) {
	var out Perms
	for _, a := range ps {
		removed := false
		for _, b := range other {
			if covers(b, a) || a == b {
				removed = true
				break
			}
			if covers(a, b) {
				return nil, fmt.Errorf("%w: %s is granted for every kind; revoke %s and grant the kinds to keep", ErrBadPerms, a, a.Method)
			}
		}
		if !removed {
			out = append(out, a)
		}
	}
	return canonical(out), nil
}

// GrantAtConnect computes the permissions a client gets: the secret's perms (DefaultPerms when
// the secret was created without any) intersected with what the client requested in connect's
// third param, or the secret's perms when it requested none. Errors: ErrBadPerms when the
// secret's own perms are malformed.
func GrantAtConnect(secretPerms string, secretHasPerms bool, requested string) (Perms, error) {
	base := MustParsePerms(DefaultPerms)
	if secretHasPerms {
		var err error
		if base, err = ParsePerms(secretPerms); err != nil {
			return nil, err
		}
	}
	if strings.TrimSpace(requested) == "" {
		return base, nil
	}
	// Clients word their requests in many ways; an entry this signer cannot read grants
	// nothing (it is skipped), and a request of only unreadable entries grants nothing at all.
	var req Perms
	for _, item := range strings.Split(requested, ",") {
		if p, err := ParsePerms(item); err == nil {
			req = append(req, p...)
		}
	}
	return base.Intersect(canonical(req)), nil
}
