package electrum

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Message is one JSON-RPC 2.0 object received from the server: either a response to a request
// (HasID true; exactly one of Result and Error meaningful) or a notification (Method set, as for
// blockchain.headers.subscribe and blockchain.scripthash.subscribe pushes).
type Message struct {
	HasID  bool
	ID     uint64
	Method string
	Params json.RawMessage
	Result json.RawMessage // raw JSON, "null" included; nil when the response carries an error
	Error  *ServerError    // set for an error response (Method left empty; the caller knows it)
}

// IsNotification reports whether m is a server push rather than a response.
func (m Message) IsNotification() bool { return !m.HasID && m.Method != "" }

type wireMessage struct {
	JSONRPC *string         `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  *string         `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   json.RawMessage `json:"error"`
}

type wireError struct {
	Code    json.Number `json:"code"`
	Message string      `json:"message"`
}

// DecodeMessage parses one line from the server: a JSON object, or a non-empty JSON array of
// objects (the answer to a batch). It returns the messages in the order they appear, or an error
// wrapping ErrMalformedMessage. It never panics, whatever the input (see FuzzDecodeMessage).
func DecodeMessage(line []byte) ([]Message, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil, fmt.Errorf("%w: empty line", ErrMalformedMessage)
	}
	if line[0] == '[' {
		var raws []json.RawMessage
		if err := json.Unmarshal(line, &raws); err != nil {
			return nil, fmt.Errorf("%w: batch: %v", ErrMalformedMessage, err)
		}
		if len(raws) == 0 {
			return nil, fmt.Errorf("%w: empty batch", ErrMalformedMessage)
		}
		out := make([]Message, 0, len(raws))
		for i, r := range raws {
			m, err := decodeOne(r)
			if err != nil {
				return nil, fmt.Errorf("batch item %d: %w", i, err)
			}
			out = append(out, m)
		}
		return out, nil
	}
	m, err := decodeOne(line)
	if err != nil {
		return nil, err
	}
	return []Message{m}, nil
}

func isNull(r json.RawMessage) bool {
	return r == nil || bytes.Equal(bytes.TrimSpace(r), []byte("null"))
}

func decodeOne(raw []byte) (Message, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return Message{}, fmt.Errorf("%w: not a JSON object", ErrMalformedMessage)
	}
	var w wireMessage
	if err := json.Unmarshal(raw, &w); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrMalformedMessage, err)
	}
	if w.JSONRPC != nil && *w.JSONRPC != "2.0" {
		return Message{}, fmt.Errorf("%w: jsonrpc %q, want \"2.0\"", ErrMalformedMessage, *w.JSONRPC)
	}
	if w.Method != nil && isNull(w.ID) {
		if *w.Method == "" {
			return Message{}, fmt.Errorf("%w: notification with an empty method", ErrMalformedMessage)
		}
		return Message{Method: *w.Method, Params: w.Params}, nil
	}
	if isNull(w.ID) {
		// A response with a null id answers a request the server could not parse; it cannot be
		// matched to a caller.
		if !isNull(w.Error) {
			if se, err := decodeError(w.Error); err == nil {
				return Message{}, fmt.Errorf("%w: error without id: %d %s", ErrMalformedMessage, se.Code, se.Message)
			}
		}
		return Message{}, fmt.Errorf("%w: neither a notification nor a response with an id", ErrMalformedMessage)
	}
	id, err := strconv.ParseUint(string(w.ID), 10, 64)
	if err != nil {
		return Message{}, fmt.Errorf("%w: id %s is not a non-negative integer", ErrMalformedMessage, truncate(w.ID))
	}
	m := Message{HasID: true, ID: id}
	switch {
	case !isNull(w.Error):
		se, err := decodeError(w.Error)
		if err != nil {
			return Message{}, err
		}
		m.Error = se
	case w.Result != nil:
		m.Result = w.Result
	default:
		return Message{}, fmt.Errorf("%w: response %d has neither result nor error", ErrMalformedMessage, id)
	}
	return m, nil
}

func decodeError(raw json.RawMessage) (*ServerError, error) {
	var we wireError
	if err := json.Unmarshal(raw, &we); err != nil {
		// Some servers have sent a bare string; keep its text rather than lose the reason.
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return &ServerError{Message: s}, nil
		}
		return nil, fmt.Errorf("%w: error object: %v", ErrMalformedMessage, err)
	}
	code := 0
	if we.Code != "" {
		c, err := strconv.Atoi(string(we.Code))
		if err != nil {
			return nil, fmt.Errorf("%w: error code %q is not an integer", ErrMalformedMessage, string(we.Code))
		}
		code = c
	}
	return &ServerError{Code: code, Message: we.Message}, nil
}

func truncate(b []byte) string {
	const n = 40
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
