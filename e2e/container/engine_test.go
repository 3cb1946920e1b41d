package container

// engine_test.go — the Docker engine and image (scripts/container-test.sh) and the docker CLI
// calls the container test makes.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// engine is a Docker engine with the cosigner image built: the docker CLI and its DOCKER_HOST.
type engine struct {
	cli   string // docker CLI
	host  string // DOCKER_HOST
	image string // the image built from the repository's Dockerfile
}

// startEngine runs `scripts/container-test.sh up` (start the engine unless it runs, make the base
// image unless present, build the image) and registers `scripts/container-test.sh down` as a
// cleanup. An engine that cannot start fails the test.
func startEngine(ctx context.Context, t *testing.T, root string) *engine {
	t.Helper()
	script := filepath.Join(root, "scripts", "container-test.sh")
	cmd := exec.CommandContext(ctx, "bash", script, "up")
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("scripts/container-test.sh up took %s:\n%s", time.Since(start).Round(100*time.Millisecond), strings.TrimSpace(stderr.String()))
	if err != nil {
		t.Fatalf("scripts/container-test.sh up: %v (the container test needs a Docker engine and the image built)", err)
	}
	kv := map[string]string{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			kv[k] = v
		}
	}
	e := &engine{cli: kv["DOCKER"], host: kv["DOCKER_HOST"], image: kv["IMAGE"]}
	if e.cli == "" || e.host == "" || e.image == "" {
		t.Fatalf("scripts/container-test.sh up printed %q, want DOCKER, DOCKER_HOST and IMAGE", stdout.String())
	}
	// down stops the script's own engine (this run's, or one a killed run left behind), not an
	// engine named by COSIGNER_DOCKER_HOST, and not while another run's containers are up.
	t.Cleanup(func() {
		down := exec.Command("bash", script, "down")
		down.Dir = root
		out, err := down.CombinedOutput()
		if err != nil {
			t.Errorf("scripts/container-test.sh down: %v\n%s", err, out)
		} else if len(out) > 0 {
			t.Logf("scripts/container-test.sh down:\n%s", strings.TrimSpace(string(out)))
		}
	})
	return e
}

// docker runs the docker CLI and returns its stdout (trimmed); an error carries stderr.
func (e *engine) docker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.cli, args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+e.host)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return strings.TrimSpace(stdout.String()), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// mustDocker is docker that fails the test on error.
func (e *engine) mustDocker(ctx context.Context, t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.docker(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// inspect evaluates a Go template on a container or volume (docker inspect --format).
func (e *engine) inspect(ctx context.Context, name, format string) (string, error) {
	return e.docker(ctx, "inspect", "--format", format, name)
}

// logs returns a container's stdout and stderr.
func (e *engine) logs(ctx context.Context, name string) string {
	cmd := exec.CommandContext(ctx, e.cli, "logs", name)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+e.host)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(docker logs %s: %v) %s", name, err, out)
	}
	return string(out)
}

// waitHealthy polls the container's HEALTHCHECK status (docker inspect .State.Health.Status)
// until it is "healthy"; a container that stops or turns unhealthy is an error with its log.
func (e *engine) waitHealthy(ctx context.Context, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := e.inspect(ctx, name, "{{.State.Status}} {{.State.Health.Status}}")
		if err != nil {
			return err
		}
		switch {
		case st == "running healthy":
			return nil
		case !strings.HasPrefix(st, "running "), st == "running unhealthy":
			return fmt.Errorf("container %s is %q; log:\n%s", name, st, tail(e.logs(ctx, name), 30))
		case time.Now().After(deadline):
			return fmt.Errorf("container %s not healthy after %s (%q); log:\n%s", name, timeout, st, tail(e.logs(ctx, name), 30))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// copyOut copies a container's directory (running or stopped) into a new temporary directory
// through `docker cp` (a tar stream), and returns the local copy's path.
func (e *engine) copyOut(ctx context.Context, t *testing.T, name, dir string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, e.cli, "cp", name+":"+dir+"/.", "-")
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+e.host)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker cp %s:%s: %v: %s", name, dir, err, stderr.String())
	}
	dst := t.TempDir()
	tr := tar.NewReader(&stdout)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return dst
		}
		if err != nil {
			t.Fatalf("docker cp %s:%s: reading the tar stream: %v", name, dir, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		// The entries are named ./file or ./sub/file; only the top-level files are needed.
		base := filepath.Base(h.Name)
		if strings.Count(strings.TrimPrefix(h.Name, "./"), "/") > 0 {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, base), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
