package electrum

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Options.
const (
	DefaultClientName             = "cosigner"
	DefaultProtocolMin            = "1.4"
	DefaultProtocolMax            = "1.6"
	DefaultRequestTimeout         = 30 * time.Second
	DefaultPingInterval           = 60 * time.Second
	DefaultMaxMessageSize         = 16 << 20 // bytes per line
	DefaultMaxQueuedNotifications = 1 << 20
	DefaultMaxRequestSize         = 1_000_000 // bytes per line; ElectrumX's default MAX_RECV
	DefaultMaxConsecutiveTimeouts = 2
)

// Options tune a Client. The zero value means every default.
type Options struct {
	// ClientName is the first parameter of server.version.
	ClientName string
	// ProtocolMin and ProtocolMax are the protocol range asked for in server.version.
	ProtocolMin, ProtocolMax string
	// RequestTimeout bounds a request whose context has no deadline.
	RequestTimeout time.Duration
	// PingInterval is how often server.ping is sent to keep the connection alive (ElectrumX
	// drops clients idle for 600 s) and to notice a dead peer. Negative disables it.
	PingInterval time.Duration
	// MaxMessageSize bounds one line from the server, in bytes; a longer one closes the
	// connection with ErrMessageTooLarge.
	MaxMessageSize int
	// MaxQueuedNotifications bounds notifications received but not yet taken from
	// Notifications; reaching it closes the connection with ErrNotificationBacklog.
	MaxQueuedNotifications int
	// MaxRequestSize bounds one request line, in bytes; a larger request fails with
	// ErrRequestTooLarge before anything is sent (ElectrumX refuses requests over 1 MB).
	MaxRequestSize int
	// MaxConsecutiveTimeouts closes the connection with ErrUnresponsive when that many
	// requests in a row time out with nothing at all received from the server meanwhile, so
	// that a server which stopped answering is left (and a Pool fails over). Negative: never.
	MaxConsecutiveTimeouts int
	// TLS decides which certificates of ssl:// servers are trusted (pins, trust on first use).
	TLS TLSOptions
	// Logger receives debug and warning records; nil discards them.
	Logger *slog.Logger

	// hooks lets a Pool observe the connection (latency, end); nil for a plain Dial.
	hooks *hooks
}

// hooks are called by the client's own goroutines; they must not block.
type hooks struct {
	latency func(time.Duration)
	ended   func(error)
}

func (o *Options) setDefaults() {
	if o.ClientName == "" {
		o.ClientName = DefaultClientName
	}
	if o.ProtocolMin == "" {
		o.ProtocolMin = DefaultProtocolMin
	}
	if o.ProtocolMax == "" {
		o.ProtocolMax = DefaultProtocolMax
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.PingInterval == 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	if o.MaxQueuedNotifications <= 0 {
		o.MaxQueuedNotifications = DefaultMaxQueuedNotifications
	}
	if o.MaxRequestSize <= 0 {
		o.MaxRequestSize = DefaultMaxRequestSize
	}
	if o.MaxConsecutiveTimeouts == 0 {
		o.MaxConsecutiveTimeouts = DefaultMaxConsecutiveTimeouts
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Notification is a server push: Method is "blockchain.headers.subscribe" (Params
// [{"hex","height"}]) or "blockchain.scripthash.subscribe" (Params [scripthash, status|null]).
type Notification struct {
	Method string
	Params json.RawMessage
}

// Call is one request of a batch (see Client.Batch). Result, if non-nil, is a pointer that the
// response's result is decoded into; Err is set per call (a *ServerError for an error object).
type Call struct {
	Method string
	Params []any
	Result any
	Err    error
}

type response struct {
	result json.RawMessage
	err    *ServerError
}

// Client is one connection to an Electrum server. It is safe for concurrent use. Its goroutines
// (reader, notification delivery, keepalive) are owned by it and end when Close returns.
type Client struct {
	opts   Options
	log    *slog.Logger
	conn   net.Conn
	server string

	// ServerSoftware and Protocol are the two strings server.version answered, e.g.
	// "ElectrumX 1.18.0" and "1.4.3". Protocol is within [ProtocolMin, ProtocolMax]. Set by
	// Dial before it returns; read-only afterwards.
	ServerSoftware string
	Protocol       string

	latency  atomic.Int64 // nanoseconds, last server.version / server.ping round trip
	timeouts atomic.Int32 // consecutive timed-out requests with nothing read meanwhile
	reads    atomic.Uint64

	wmu sync.Mutex // serialises writes so lines never interleave

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan response
	queue   []Notification // received, not yet delivered; in arrival order
	qSignal chan struct{}  // capacity 1: "queue changed"
	err     error          // why the connection ended; set once

	notifications chan Notification
	done          chan struct{} // closed when the connection has ended (error or Close)
	closing       chan struct{} // closed by Close: stop delivering too
	closeOnce     sync.Once
	closingOnce   sync.Once
	wg            sync.WaitGroup
}

// Dial connects to serverURL ("tcp://host:port", or "ssl://host:port" for TLS trusted as
// Options.TLS says), starts the client's goroutines and performs the handshake:
// server.version(ClientName, [ProtocolMin, ProtocolMax]) as the first and only version
// message (Electrum protocol, server.version). The negotiated version must be in the range
// asked for. ctx bounds the dial, the TLS handshake and server.version (all three together by
// Options.RequestTimeout when ctx has no deadline), not the connection's life; end that with
// Close.
//
// Errors: ErrBadURL, ErrUnsupportedScheme; dial errors; for TLS *PinMismatchError
// (ErrCertificateMismatch), ErrUntrustedCertificate, ErrPinStore; ErrProtocolVersion; and what
// Call returns.
func Dial(ctx context.Context, serverURL string, opts Options) (*Client, error) {
	opts.setDefaults()
	addr, err := ParseServer(serverURL)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.RequestTimeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr.Addr)
	if err != nil {
		return nil, fmt.Errorf("electrum: dial %s: %w", addr.Addr, err)
	}
	if addr.TLS {
		cfg, err := tlsConfig(addr, opts.TLS, opts.Logger)
		if err != nil {
			conn.Close()
			return nil, err
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("electrum: TLS handshake with %s: %w", serverURL, err)
		}
		conn = tc
	}
	c := newClient(conn, serverURL, opts)
	var ver []string
	began := time.Now()
	if err := c.call(ctx, "server.version", []any{opts.ClientName, []string{opts.ProtocolMin, opts.ProtocolMax}}, &ver); err != nil {
		c.Close()
		return nil, fmt.Errorf("electrum: handshake with %s: %w", serverURL, err)
	}
	c.setLatency(time.Since(began))
	if len(ver) != 2 {
		c.Close()
		return nil, fmt.Errorf("electrum: handshake with %s: %w: server.version answered %d strings, want 2", serverURL, ErrMalformedMessage, len(ver))
	}
	if !versionInRange(ver[1], opts.ProtocolMin, opts.ProtocolMax) {
		c.Close()
		return nil, fmt.Errorf("electrum: handshake with %s: %w: %q, asked for %s to %s", serverURL, ErrProtocolVersion, truncate([]byte(ver[1])), opts.ProtocolMin, opts.ProtocolMax)
	}
	c.ServerSoftware, c.Protocol = ver[0], ver[1]
	if opts.PingInterval > 0 {
		c.wg.Add(1)
		go c.keepalive()
	}
	return c, nil
}

// parseVersion parses "1.4.3" into numbers; false when it does not parse.
func parseVersion(s string) ([]int, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return nil, false
	}
	out := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 1<<16 {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

func compareVersions(a, b []int) int {
	for i := 0; i < max(len(a), len(b)); i++ {
		var x, y int
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// versionInRange reports whether v is within [lo, hi], where hi also admits its own
// sub-versions ("1.6" admits "1.6.1"), as server.version negotiation does.
func versionInRange(v, lo, hi string) bool {
	pv, ok1 := parseVersion(v)
	pl, ok2 := parseVersion(lo)
	ph, ok3 := parseVersion(hi)
	if !ok1 || !ok2 || !ok3 {
		return false
	}
	if compareVersions(pv, pl) < 0 {
		return false
	}
	if len(pv) > len(ph) {
		pv = pv[:len(ph)]
	}
	return compareVersions(pv, ph) <= 0
}

func newClient(conn net.Conn, server string, opts Options) *Client {
	c := &Client{
		opts:          opts,
		log:           opts.Logger.With("server", server),
		conn:          conn,
		server:        server,
		pending:       make(map[uint64]chan response),
		qSignal:       make(chan struct{}, 1),
		notifications: make(chan Notification),
		done:          make(chan struct{}),
		closing:       make(chan struct{}),
	}
	c.wg.Add(2)
	go c.readLoop()
	go c.deliverLoop()
	return c
}

// Notifications returns the channel of server pushes, in the order the server sent them. None is
// dropped while the connection lives: the reader queues them (up to MaxQueuedNotifications) so a
// slow consumer never stalls responses. After the connection ends, the queued ones are still
// delivered and then the channel is closed; Close stops delivery at once.
func (c *Client) Notifications() <-chan Notification { return c.notifications }

// Done is closed when the connection has ended; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (ErrClosed after Close), or nil while it is up.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Server returns the URL this client was dialled with.
func (c *Client) Server() string { return c.server }

// ProtocolVersion is the protocol version negotiated by server.version (e.g. "1.4.3").
func (c *Client) ProtocolVersion() string { return c.Protocol }

// Latency is the last measured round trip of server.version or the keepalive server.ping.
func (c *Client) Latency() time.Duration { return time.Duration(c.latency.Load()) }

func (c *Client) setLatency(d time.Duration) {
	c.latency.Store(int64(d))
	if h := c.opts.hooks; h != nil && h.latency != nil {
		h.latency(d)
	}
}

// Close ends the connection, fails pending requests with ErrClosed, and waits for the client's
// goroutines to stop. It is safe to call more than once.
func (c *Client) Close() error {
	c.closingOnce.Do(func() { close(c.closing) })
	c.fail(ErrClosed)
	c.wg.Wait()
	return nil
}

// fail ends the connection with err (only the first error is kept) and fails pending calls.
func (c *Client) fail(err error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.err = err
		pending := c.pending
		c.pending = make(map[uint64]chan response)
		c.mu.Unlock()
		c.conn.Close()
		close(c.done)
		for _, ch := range pending {
			close(ch) // a closed channel means "connection ended"; see wait
		}
		if !errors.Is(err, ErrClosed) {
			c.log.Debug("electrum connection ended", "err", err) // the owner logs what it does about it
		}
		if h := c.opts.hooks; h != nil && h.ended != nil {
			h.ended(err)
		}
	})
}

// Call sends one request and decodes its result into result (a pointer, or nil to ignore it).
// Params are encoded as a JSON array. If ctx has no deadline, Options.RequestTimeout applies.
// Errors: *ServerError for the server's error object (it unwraps to its kind, e.g.
// ErrHistoryTooLarge); ErrClosed (wrapped, with the cause) if the connection ends first;
// ErrTimeout wrapping context.DeadlineExceeded on timeout; context.Canceled on cancellation;
// ErrRequestTooLarge; ErrVersionOnce for server.version.
func (c *Client) Call(ctx context.Context, method string, params []any, result any) error {
	if method == "server.version" {
		return ErrVersionOnce
	}
	return c.call(ctx, method, params, result)
}

func (c *Client) call(ctx context.Context, method string, params []any, result any) error {
	calls := []*Call{{Method: method, Params: params, Result: result}}
	if err := c.do(ctx, calls, false); err != nil {
		return err
	}
	return calls[0].Err
}

// Batch sends calls as one JSON-RPC batch (a JSON array on one line) and waits for every answer;
// the server may answer them in any order. The returned error is for the whole batch (transport,
// timeout, closed connection); each call's own outcome is in its Err. An empty batch is a no-op.
func (c *Client) Batch(ctx context.Context, calls []*Call) error {
	if len(calls) == 0 {
		return nil
	}
	for _, call := range calls {
		if call.Method == "server.version" {
			return ErrVersionOnce
		}
	}
	return c.do(ctx, calls, true)
}

type wireRequest struct {
	JSONRPC string `json:"jsonrpc"`
	ID      uint64 `json:"id"`
	Method  string `json:"method"`
	Params  []any  `json:"params"`
}

func (c *Client) do(ctx context.Context, calls []*Call, batch bool) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.RequestTimeout)
		defer cancel()
	}
	// Register every id before writing, so a fast answer always finds its caller.
	ids := make([]uint64, len(calls))
	chans := make([]chan response, len(calls))
	reqs := make([]wireRequest, len(calls))
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	for i, call := range calls {
		c.nextID++
		ids[i] = c.nextID
		chans[i] = make(chan response, 1)
		c.pending[ids[i]] = chans[i]
		params := call.Params
		if params == nil {
			params = []any{}
		}
		reqs[i] = wireRequest{JSONRPC: "2.0", ID: ids[i], Method: call.Method, Params: params}
	}
	c.mu.Unlock()
	unregister := func() {
		c.mu.Lock()
		for _, id := range ids {
			delete(c.pending, id)
		}
		c.mu.Unlock()
	}

	var line []byte
	var err error
	if batch {
		line, err = json.Marshal(reqs)
	} else {
		line, err = json.Marshal(reqs[0])
	}
	if err != nil {
		unregister()
		return fmt.Errorf("electrum: encode %s: %w", calls[0].Method, err)
	}
	if len(line)+1 > c.opts.MaxRequestSize {
		unregister()
		return fmt.Errorf("electrum: %s: %w: %d bytes, limit %d", calls[0].Method, ErrRequestTooLarge, len(line)+1, c.opts.MaxRequestSize)
	}
	line = append(line, '\n')
	readsBefore := c.reads.Load()
	if err := c.write(ctx, line); err != nil {
		unregister()
		return err
	}
	for i, ch := range chans {
		select {
		case r, ok := <-ch:
			if !ok {
				return fmt.Errorf("electrum: %s: %w", calls[i].Method, c.closedErr())
			}
			calls[i].Err = decodeResult(calls[i], r)
		case <-ctx.Done():
			unregister()
			err := ctx.Err()
			if errors.Is(err, context.DeadlineExceeded) {
				c.noteTimeout(readsBefore)
				return fmt.Errorf("electrum: %s: %w: %w", calls[i].Method, ErrTimeout, err)
			}
			return fmt.Errorf("electrum: %s: %w", calls[i].Method, err)
		}
	}
	return nil
}

// noteTimeout counts a timed-out request; when nothing was read from the server since it was
// sent and MaxConsecutiveTimeouts is reached, the connection is closed with ErrUnresponsive.
func (c *Client) noteTimeout(readsBefore uint64) {
	if c.reads.Load() != readsBefore {
		return // the server is talking, just slow on this request
	}
	n := c.timeouts.Add(1)
	if limit := c.opts.MaxConsecutiveTimeouts; limit > 0 && int(n) >= limit {
		c.fail(fmt.Errorf("%w: %w: %d requests in a row got no answer", ErrUnresponsive, ErrTimeout, n))
	}
}

func (c *Client) closedErr() error {
	err := c.Err()
	if err == nil || errors.Is(err, ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrClosed, err)
}

func decodeResult(call *Call, r response) error {
	if r.err != nil {
		se := *r.err
		se.Method = call.Method
		return &se
	}
	if call.Result == nil {
		return nil
	}
	if err := json.Unmarshal(r.result, call.Result); err != nil {
		return fmt.Errorf("electrum: %s: decode result: %w", call.Method, err)
	}
	return nil
}

func (c *Client) write(ctx context.Context, line []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetWriteDeadline(dl)
	}
	if _, err := c.conn.Write(line); err != nil {
		// A partial write breaks the framing for everyone: end the connection.
		err = fmt.Errorf("electrum: write: %w", err)
		c.fail(err)
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return nil
}

func (c *Client) readLoop() {
	defer c.wg.Done()
	sc := bufio.NewScanner(c.conn)
	initial := 64 << 10
	if initial > c.opts.MaxMessageSize {
		initial = c.opts.MaxMessageSize
	}
	sc.Buffer(make([]byte, 0, initial), c.opts.MaxMessageSize)
	for sc.Scan() {
		c.reads.Add(1)
		c.timeouts.Store(0)
		line := sc.Bytes()
		if len(trimSpace(line)) == 0 {
			continue
		}
		msgs, err := DecodeMessage(line)
		if err != nil {
			c.fail(fmt.Errorf("electrum: read: %w", err))
			return
		}
		for _, m := range msgs {
			if m.IsNotification() {
				if !c.enqueue(Notification{Method: m.Method, Params: m.Params}) {
					c.fail(ErrNotificationBacklog)
					return
				}
				continue
			}
			c.mu.Lock()
			ch, ok := c.pending[m.ID]
			delete(c.pending, m.ID)
			c.mu.Unlock()
			if !ok {
				c.log.Debug("electrum response for no pending request (timed out?)", "id", m.ID)
				continue
			}
			ch <- response{result: m.Result, err: m.Error}
		}
	}
	err := sc.Err()
	switch {
	case errors.Is(err, bufio.ErrTooLong):
		err = fmt.Errorf("%w (limit %d bytes)", ErrMessageTooLarge, c.opts.MaxMessageSize)
	case err == nil:
		err = ErrServerClosed
	default:
		err = fmt.Errorf("electrum: read: %w", err)
	}
	c.fail(err)
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// enqueue appends n to the delivery queue; false when the queue is full.
func (c *Client) enqueue(n Notification) bool {
	c.mu.Lock()
	if len(c.queue) >= c.opts.MaxQueuedNotifications {
		c.mu.Unlock()
		return false
	}
	c.queue = append(c.queue, n)
	c.mu.Unlock()
	select {
	case c.qSignal <- struct{}{}:
	default:
	}
	return true
}

// deliverLoop hands queued notifications to the consumer in order.
func (c *Client) deliverLoop() {
	defer c.wg.Done()
	defer close(c.notifications)
	for {
		c.mu.Lock()
		var n Notification
		have := len(c.queue) > 0
		if have {
			n = c.queue[0]
			c.queue[0] = Notification{}
			c.queue = c.queue[1:]
		}
		c.mu.Unlock()
		if have {
			select {
			case c.notifications <- n:
				continue
			case <-c.closing:
				return
			}
		}
		select {
		case <-c.qSignal:
		case <-c.done:
			// Drain what arrived before the end, then stop.
			c.mu.Lock()
			empty := len(c.queue) == 0
			c.mu.Unlock()
			if empty {
				return
			}
		case <-c.closing:
			return
		}
	}
}

func (c *Client) keepalive() {
	defer c.wg.Done()
	t := time.NewTicker(c.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), c.opts.RequestTimeout)
			began := time.Now()
			err := c.call(ctx, "server.ping", nil, nil)
			cancel()
			if err == nil {
				c.setLatency(time.Since(began))
			}
			if err != nil {
				c.fail(fmt.Errorf("electrum: keepalive server.ping: %w", err))
				return
			}
		}
	}
}
