// Package bench is the benchmark harness: Go benchmarks that measure cosigner on the local test
// network next to a baseline measured in the same run (docs/benchmarks.md, "Numbers the project must
// show"). Run it with `make bench`; each benchmark reports its figures with b.ReportMetric
// (p50_ms, p99_ms, scripts/s, …) so that `go test -bench` prints them side by side.
// The benchmarks are skipped by `go test -short`.
package bench
