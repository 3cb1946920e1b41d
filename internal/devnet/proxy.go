package devnet

import (
	"bufio"
	"io"
	"net"
	"sync"
)

// Proxy forwards TCP connections from a loopback port to a target server, so that a test can
// put a real server (ElectrumX) behind a wire it controls: Cut severs every open connection,
// Close also stops listening. With a rewrite function, each line (up to and including '\n') the
// server sends is passed through it before it reaches the client; requests always pass
// unchanged. A Proxy speaks no protocol of its own.
type Proxy struct {
	ln       net.Listener
	target   string
	rewrite  func(line string) string
	mu       sync.Mutex
	conns    []net.Conn
	accepted int
	wg       sync.WaitGroup // forwarding goroutines
	done     chan struct{}  // closed when the accept loop has returned
}

// NewProxy listens on 127.0.0.1 (a free port) and forwards each accepted connection to target
// (host:port); rewrite may be nil. A connection whose dial to target fails is closed. The caller
// must Close the proxy.
func NewProxy(target string, rewrite func(line string) string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, rewrite: rewrite, done: make(chan struct{})}
	go p.accept()
	return p, nil
}

func (p *Proxy) accept() {
	defer close(p.done)
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			down.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, down, up)
		p.accepted++
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); io.Copy(up, down); up.Close() }()
		go func() { defer p.wg.Done(); p.forward(down, up); down.Close() }()
	}
}

// forward copies the server's bytes to the client, line by line through rewrite if set.
func (p *Proxy) forward(down, up net.Conn) {
	if p.rewrite == nil {
		io.Copy(down, up)
		return
	}
	r := bufio.NewReaderSize(up, 1<<20)
	for {
		line, err := r.ReadString('\n')
		if len(line) > 0 {
			if _, werr := io.WriteString(down, p.rewrite(line)); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is the proxy as an Electrum server URL, tcp://host:port.
func (p *Proxy) URL() string { return "tcp://" + p.Addr() }

// Cut closes every connection open now (both sides); new connections are still accepted.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Accepted is how many connections were accepted and forwarded so far.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Close stops listening, severs every connection (once no more can be accepted) and waits for
// the forwarding goroutines. It may be called more than once.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	<-p.done
	p.Cut()
	p.wg.Wait()
	return err
}
