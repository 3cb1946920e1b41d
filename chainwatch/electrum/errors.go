package electrum

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is returned by calls made on, or pending on, a connection that has been closed
	// (by Close, by a read or write error, or by a failed keepalive). Client.Err says why.
	ErrClosed = errors.New("electrum: connection closed")

	// ErrMessageTooLarge means the server sent a line longer than Options.MaxMessageSize; the
	// connection is closed because framing can no longer be trusted.
	ErrMessageTooLarge = errors.New("electrum: message exceeds the size limit")

	// ErrUnsupportedScheme is returned by Dial for a URL scheme it cannot serve (ssl:// for now).
	ErrUnsupportedScheme = errors.New("electrum: unsupported server URL scheme")

	// ErrBadURL is returned by Dial for a server URL that is not scheme://host:port.
	ErrBadURL = errors.New("electrum: bad server URL")

	// ErrMalformedMessage means a line from the server is not a JSON-RPC 2.0 message.
	ErrMalformedMessage = errors.New("electrum: malformed message")

	// ErrVersionOnce is returned when a caller tries to send server.version itself: Dial sends it
	// first and the protocol accepts it only once per connection.
	ErrVersionOnce = errors.New("electrum: server.version is sent once, by Dial")

	// ErrNotificationBacklog means the consumer of Notifications fell so far behind that the
	// queue reached Options.MaxQueuedNotifications; the connection is closed rather than drop one.
	ErrNotificationBacklog = errors.New("electrum: notification backlog limit reached")
)

// ServerError is a JSON-RPC error object returned by the server for one request
// ({"code": int, "message": string}). ElectrumX uses code 1 for a bad request (for example a
// rejected broadcast, whose message carries the node's reason) and 2 for a daemon error.
type ServerError struct {
	Method  string
	Code    int
	Message string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("electrum: %s: server error %d: %s", e.Method, e.Code, e.Message)
}
