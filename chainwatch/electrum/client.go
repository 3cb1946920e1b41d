package electrum

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
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
	// Logger receives debug and warning records; nil discards them.
	Logger *slog.Logger
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
	// "ElectrumX 1.18.0" and "1.4".
	ServerSoftware string
	Protocol       string

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

// Dial connects to serverURL ("tcp://host:port"; "ssl://" returns ErrUnsupportedScheme for now),
// starts the client's goroutines and performs the handshake: server.version(ClientName,
// [ProtocolMin, ProtocolMax]) as the first and only version message. ctx bounds the dial and the
// handshake, not the connection's life; end that with Close.
func Dial(ctx context.Context, serverURL string, opts Options) (*Client, error) {
	opts.setDefaults()
	addr, err := parseServerURL(serverURL)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("electrum: dial %s: %w", addr, err)
	}
	c := newClient(conn, serverURL, opts)
	var ver []string
	if err := c.call(ctx, "server.version", []any{opts.ClientName, []string{opts.ProtocolMin, opts.ProtocolMax}}, &ver); err != nil {
		c.Close()
		return nil, fmt.Errorf("electrum: handshake with %s: %w", serverURL, err)
	}
	if len(ver) != 2 {
		c.Close()
		return nil, fmt.Errorf("electrum: handshake with %s: %w: server.version answered %d strings, want 2", serverURL, ErrMalformedMessage, len(ver))
	}
	c.ServerSoftware, c.Protocol = ver[0], ver[1]
	if opts.PingInterval > 0 {
		c.wg.Add(1)
		go c.keepalive()
	}
	return c, nil
}

// parseServerURL returns host:port for a tcp:// URL.
func parseServerURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrBadURL, s, err)
	}
	switch u.Scheme {
	case "tcp":
	case "ssl", "tls":
		return "", fmt.Errorf("%w: %q: TLS is not supported yet", ErrUnsupportedScheme, s)
	default:
		return "", fmt.Errorf("%w: %q: scheme must be tcp://", ErrUnsupportedScheme, s)
	}
	if u.Host == "" || u.Port() == "" {
		return "", fmt.Errorf("%w: %q: want tcp://host:port", ErrBadURL, s)
	}
	return u.Host, nil
}

// ParseServerURL checks a server URL the way Dial will, without connecting.
func ParseServerURL(s string) error {
	_, err := parseServerURL(s)
	return err
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
	})
}

// Call sends one request and decodes its result into result (a pointer, or nil to ignore it).
// Params are encoded as a JSON array. If ctx has no deadline, Options.RequestTimeout applies.
// Errors: *ServerError for the server's error object; ErrClosed (wrapped, with the cause) if the
// connection ends first; ctx's error on timeout or cancellation; ErrVersionOnce for server.version.
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
	line = append(line, '\n')
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
			return fmt.Errorf("electrum: %s: %w", calls[i].Method, ctx.Err())
		}
	}
	return nil
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
		err = errors.New("electrum: server closed the connection")
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
			err := c.call(ctx, "server.ping", nil, nil)
			cancel()
			if err != nil {
				c.fail(fmt.Errorf("electrum: keepalive server.ping: %w", err))
				return
			}
		}
	}
}
