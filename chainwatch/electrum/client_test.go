package electrum

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer is a tiny line server for framing edge cases only. Everything else is tested against
// a real ElectrumX (see package chainwatch's integration test).
type fakeServer struct {
	ln      net.Listener
	handler func(t *testing.T, r *bufio.Reader, w net.Conn)
	wg      sync.WaitGroup
}

func startFake(t *testing.T, handler func(t *testing.T, r *bufio.Reader, w net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{ln: ln, handler: handler}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		// Every client starts with server.version.
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var req struct {
			ID     uint64 `json:"id"`
			Method string `json:"method"`
			Params []any  `json:"params"`
		}
		if err := json.Unmarshal(line, &req); err != nil || req.Method != "server.version" {
			t.Errorf("first message = %q, want server.version", line)
			return
		}
		if got := fmt.Sprint(req.Params); got != "[test [1.4 1.6]]" {
			t.Errorf("server.version params = %s", got)
		}
		fmt.Fprintf(conn, `{"jsonrpc":"2.0","id":%d,"result":["FakeX 0.1","1.4"]}`+"\n", req.ID)
		s.handler(t, r, conn)
	}()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return "tcp://" + ln.Addr().String()
}

type rawReq struct {
	ID     uint64          `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

func dialTest(t *testing.T, url string, opts Options) *Client {
	t.Helper()
	opts.ClientName = "test"
	opts.PingInterval = -1
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if c.ServerSoftware != "FakeX 0.1" || c.Protocol != "1.4" {
		t.Fatalf("version = %q %q", c.ServerSoftware, c.Protocol)
	}
	return c
}

func TestOversizedLineClosesWithClearError(t *testing.T) {
	url := startFake(t, func(t *testing.T, r *bufio.Reader, w net.Conn) {
		r.ReadBytes('\n')
		big := strings.Repeat("a", 4096)
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":2,"result":"%s"}`+"\n", big)
		time.Sleep(200 * time.Millisecond)
	})
	c := dialTest(t, url, Options{MaxMessageSize: 1024})
	err := c.Call(context.Background(), "blockchain.headers.subscribe", nil, nil)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Call err = %v, want ErrClosed", err)
	}
	<-c.Done()
	if !errors.Is(c.Err(), ErrMessageTooLarge) {
		t.Fatalf("Err() = %v, want ErrMessageTooLarge", c.Err())
	}
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("Call err = %v, want it to carry ErrMessageTooLarge", err)
	}
}

func TestOutOfOrderResponsesAndInterleavedNotifications(t *testing.T) {
	url := startFake(t, func(t *testing.T, r *bufio.Reader, w net.Conn) {
		var reqs []rawReq
		for len(reqs) < 3 {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var q rawReq
			json.Unmarshal(line, &q)
			reqs = append(reqs, q)
		}
		// Answer in reverse order with notifications in between; each answer echoes the params.
		for i := len(reqs) - 1; i >= 0; i-- {
			fmt.Fprintf(w, `{"jsonrpc":"2.0","method":"blockchain.scripthash.subscribe","params":["sh","s%d"]}`+"\n", i)
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"result":%s}`+"\n", reqs[i].ID, reqs[i].Params)
		}
		time.Sleep(300 * time.Millisecond)
	})
	c := dialTest(t, url, Options{})
	var wg sync.WaitGroup
	results := make([]string, 3)
	errs := make([]error, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out []string
			errs[i] = c.Call(context.Background(), "echo", []any{fmt.Sprintf("p%d", i)}, &out)
			if len(out) == 1 {
				results[i] = out[0]
			}
		}()
	}
	wg.Wait()
	for i := range 3 {
		if errs[i] != nil || results[i] != fmt.Sprintf("p%d", i) {
			t.Errorf("call %d: result %q err %v", i, results[i], errs[i])
		}
	}
	// Notifications arrive in the order sent, none dropped, even though nobody read them while
	// the responses were flowing.
	for want := 2; want >= 0; want-- {
		select {
		case n := <-c.Notifications():
			var p []string
			json.Unmarshal(n.Params, &p)
			if n.Method != "blockchain.scripthash.subscribe" || p[1] != fmt.Sprintf("s%d", want) {
				t.Fatalf("notification = %s %s, want status s%d", n.Method, n.Params, want)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("notification missing")
		}
	}
}

func TestBatch(t *testing.T) {
	url := startFake(t, func(t *testing.T, r *bufio.Reader, w net.Conn) {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		if line[0] != '[' {
			t.Errorf("batch not sent as a JSON array: %s", line)
			return
		}
		var reqs []rawReq
		if err := json.Unmarshal(line, &reqs); err != nil {
			t.Errorf("batch: %v", err)
			return
		}
		// Answer shuffled: last first, and the middle one with an error object.
		var out []string
		for i := len(reqs) - 1; i >= 0; i-- {
			if i == 1 {
				out = append(out, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"error":{"code":1,"message":"nope"}}`, reqs[i].ID))
				continue
			}
			out = append(out, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"result":%s}`, reqs[i].ID, reqs[i].Params))
		}
		fmt.Fprintf(w, "[%s]\n", strings.Join(out, ","))
		time.Sleep(200 * time.Millisecond)
	})
	c := dialTest(t, url, Options{})
	calls := make([]*Call, 3)
	outs := make([][]string, 3)
	for i := range calls {
		calls[i] = &Call{Method: "echo", Params: []any{fmt.Sprint(i)}, Result: &outs[i]}
	}
	if err := c.Batch(context.Background(), calls); err != nil {
		t.Fatal(err)
	}
	if calls[0].Err != nil || outs[0][0] != "0" || calls[2].Err != nil || outs[2][0] != "2" {
		t.Fatalf("batch results: %v %v / %v %v", outs[0], calls[0].Err, outs[2], calls[2].Err)
	}
	var se *ServerError
	if !errors.As(calls[1].Err, &se) || se.Code != 1 || se.Message != "nope" || se.Method != "echo" {
		t.Fatalf("call 1 err = %#v, want ServerError{1, nope}", calls[1].Err)
	}
}

func TestRequestTimeoutAndLateAnswer(t *testing.T) {
	url := startFake(t, func(t *testing.T, r *bufio.Reader, w net.Conn) {
		line, _ := r.ReadBytes('\n')
		var q rawReq
		json.Unmarshal(line, &q)
		time.Sleep(300 * time.Millisecond) // past the caller's timeout
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"result":1}`+"\n", q.ID)
		line, _ = r.ReadBytes('\n')
		json.Unmarshal(line, &q)
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"result":2}`+"\n", q.ID)
		time.Sleep(200 * time.Millisecond)
	})
	c := dialTest(t, url, Options{RequestTimeout: 100 * time.Millisecond})
	err := c.Call(context.Background(), "slow", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	time.Sleep(300 * time.Millisecond)
	var n int
	if err := c.Call(context.Background(), "fast", nil, &n); err != nil || n != 2 {
		t.Fatalf("after a late answer: n=%d err=%v", n, err)
	}
}

func TestVersionOnceAndURLs(t *testing.T) {
	url := startFake(t, func(t *testing.T, r *bufio.Reader, w net.Conn) { r.ReadBytes('\n') })
	c := dialTest(t, url, Options{})
	if err := c.Call(context.Background(), "server.version", nil, nil); !errors.Is(err, ErrVersionOnce) {
		t.Fatalf("err = %v", err)
	}
	for _, tc := range []struct {
		url  string
		want error
	}{
		{"ssl://example.com:50002", nil},
		{"tls://example.com:50002", nil},
		{"tcp://[::1]:50001", nil},
		{"http://example.com:1", ErrUnsupportedScheme},
		{"tcp://example.com", ErrBadURL},
		{"tcp://:50001", ErrBadURL},
		{"tcp://example.com:50001/path", ErrBadURL},
		{"tcp://user@example.com:50001", ErrBadURL},
		{"ssl://example.com:50002#pin", ErrBadURL},
		{"tcp://127.0.0.1:50001", nil},
	} {
		if err := ParseServerURL(tc.url); !errors.Is(err, tc.want) {
			t.Errorf("ParseServerURL(%q) = %v, want %v", tc.url, err, tc.want)
		}
	}
}

func TestDecodeMessage(t *testing.T) {
	for _, tc := range []struct {
		in      string
		n       int
		wantErr bool
		check   func(t *testing.T, ms []Message)
	}{
		{in: `{"jsonrpc":"2.0","id":7,"result":null}`, n: 1, check: func(t *testing.T, ms []Message) {
			if !ms[0].HasID || ms[0].ID != 7 || string(ms[0].Result) != "null" {
				t.Errorf("%+v", ms[0])
			}
		}},
		{in: `{"jsonrpc":"2.0","method":"blockchain.headers.subscribe","params":[{"hex":"00","height":1}]}`, n: 1, check: func(t *testing.T, ms []Message) {
			if !ms[0].IsNotification() {
				t.Errorf("%+v", ms[0])
			}
		}},
		{in: `{"jsonrpc":"2.0","id":3,"error":{"code":2,"message":"daemon error"}}`, n: 1, check: func(t *testing.T, ms []Message) {
			if ms[0].Error == nil || ms[0].Error.Code != 2 {
				t.Errorf("%+v", ms[0])
			}
		}},
		{in: `[{"id":1,"result":1},{"id":2,"result":2}]`, n: 2},
		{in: `[]`, wantErr: true},
		{in: `{"id":1}`, wantErr: true},
		{in: `{"id":-1,"result":1}`, wantErr: true},
		{in: `{"id":"x","result":1}`, wantErr: true},
		{in: `{"jsonrpc":"1.0","id":1,"result":1}`, wantErr: true},
		{in: `{"id":null,"error":{"code":-32700,"message":"parse error"}}`, wantErr: true},
		{in: `nope`, wantErr: true},
		{in: `[1]`, wantErr: true},
	} {
		ms, err := DecodeMessage([]byte(tc.in))
		if (err != nil) != tc.wantErr {
			t.Errorf("DecodeMessage(%s) err = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrMalformedMessage) {
				t.Errorf("DecodeMessage(%s) err = %v, want ErrMalformedMessage", tc.in, err)
			}
			continue
		}
		if len(ms) != tc.n {
			t.Errorf("DecodeMessage(%s) = %d messages, want %d", tc.in, len(ms), tc.n)
		}
		if tc.check != nil {
			tc.check(t, ms)
		}
	}
}

func FuzzDecodeMessage(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":["ElectrumX 1.18.0","1.4"]}`,
		`{"jsonrpc":"2.0","method":"blockchain.scripthash.subscribe","params":["ab",null]}`,
		`[{"jsonrpc":"2.0","id":1,"result":[]},{"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"x"}}]`,
		`{"id":18446744073709551615,"error":"text"}`,
		`{"id":1,"error":{"code":1.5}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := DecodeMessage(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedMessage) {
				t.Fatalf("error %v does not wrap ErrMalformedMessage", err)
			}
			return
		}
		if len(ms) == 0 {
			t.Fatal("no messages and no error")
		}
		for _, m := range ms {
			if m.HasID == m.IsNotification() {
				t.Fatalf("message is both or neither response and notification: %+v", m)
			}
			if m.HasID && (m.Result == nil) == (m.Error == nil) {
				t.Fatalf("response needs exactly one of result and error: %+v", m)
			}
		}
	})
}
