// Package policyfile is the file shell around package policy: it reads a policy file
// (ReadFile, Load: size-bounded, then policy.Parse) and keeps the policy in force while the
// file changes (Reloader: fsnotify plus polling, versions recorded in a VersionStore so that a
// restart does not cut a loosening's delay short). What a change loosens and how long it waits
// is decided by package policy (LoosenedBy, WithPrior); this package must not judge requests.
package policyfile
