package electrum

import (
	"errors"
	"fmt"
	"strings"
)

// Transport and framing errors.
var (
	// ErrClosed is returned by calls made on, or pending on, a connection that has been closed
	// (by Close, by a read or write error, or by a failed keepalive). Client.Err says why.
	ErrClosed = errors.New("electrum: connection closed")

	// ErrServerClosed means the server closed the connection (EOF on read). It is the cause
	// carried by ErrClosed in that case.
	ErrServerClosed = errors.New("electrum: server closed the connection")

	// ErrMessageTooLarge means the server sent a line longer than Options.MaxMessageSize; the
	// connection is closed because framing can no longer be trusted.
	ErrMessageTooLarge = errors.New("electrum: message exceeds the size limit")

	// ErrRequestTooLarge means a request line would exceed Options.MaxRequestSize (ElectrumX
	// refuses requests over 1 MB by default and may disconnect); nothing was sent.
	ErrRequestTooLarge = errors.New("electrum: request exceeds the size limit")

	// ErrUnsupportedScheme is returned by Dial for a URL scheme other than tcp:// and ssl://.
	ErrUnsupportedScheme = errors.New("electrum: unsupported server URL scheme")

	// ErrBadURL is returned by Dial for a server URL that is not scheme://host:port.
	ErrBadURL = errors.New("electrum: bad server URL")

	// ErrMalformedMessage means a line from the server is not a JSON-RPC 2.0 message.
	ErrMalformedMessage = errors.New("electrum: malformed message")

	// ErrVersionOnce is returned when a caller tries to send server.version itself: Dial sends it
	// first and the protocol accepts it only once per connection.
	ErrVersionOnce = errors.New("electrum: server.version is sent once, by Dial")

	// ErrProtocolVersion means server.version answered a protocol version outside the range
	// asked for (Options.ProtocolMin..ProtocolMax) or one that does not parse.
	ErrProtocolVersion = errors.New("electrum: server negotiated an unsupported protocol version")

	// ErrNotificationBacklog means the consumer of Notifications fell so far behind that the
	// queue reached Options.MaxQueuedNotifications; the connection is closed rather than drop one.
	ErrNotificationBacklog = errors.New("electrum: notification backlog limit reached")

	// ErrTimeout wraps context.DeadlineExceeded when a request got no answer in time (the
	// caller's deadline or Options.RequestTimeout). The connection stays up unless
	// Options.MaxConsecutiveTimeouts is reached (then ErrUnresponsive).
	ErrTimeout = errors.New("electrum: request timed out")

	// ErrUnresponsive is why a connection is closed after Options.MaxConsecutiveTimeouts
	// requests in a row timed out with nothing received from the server in between.
	ErrUnresponsive = errors.New("electrum: server unresponsive")

	// ErrNoServers is returned by Pool.Connect when every server failed in a round and ctx ended
	// before the next attempt; the message carries each server's last error.
	ErrNoServers = errors.New("electrum: no Electrum server reachable")
)

// TLS trust errors (see TLSOptions).
var (
	// ErrUntrustedCertificate means an ssl:// server's certificate neither verifies against the
	// root CAs for its host name nor matches a pin, and trust on first use is off (no PinStore).
	ErrUntrustedCertificate = errors.New("electrum: untrusted server certificate")

	// ErrCertificateMismatch is wrapped by *PinMismatchError: the server presented a certificate
	// other than the pinned one.
	ErrCertificateMismatch = errors.New("electrum: server certificate does not match the pin")

	// ErrPinStore wraps a failure to read or write the pin store; the connection is refused
	// rather than trusted without a record.
	ErrPinStore = errors.New("electrum: pin store")

	// ErrBadFingerprint means a configured certificate fingerprint is not 32 bytes of hex.
	ErrBadFingerprint = errors.New("electrum: bad certificate fingerprint")
)

// Kinds of server error. A *ServerError unwraps to one of these (errors.Is(err,
// ErrHistoryTooLarge)), chosen from its code and message as ElectrumX sends them
// (electrumx/server/session.py; aiorpcx/jsonrpc.py for the negative codes), and from the
// messages electrs and Fulcrum send for the same conditions under other codes:
//
//   - a history over the server's limit: ElectrumX "history too large" (code 1, or 10001);
//     Fulcrum "internal error: History for <scripthash> exceeds max history 125000 with N
//     items!" (code -32603; its max_history setting, default 125,000); electrs up to 0.11 with
//     --index-lookup-limit ">N index entries, query may take too long" (code 1; 0.12 has no
//     such limit). All are ErrHistoryTooLarge: the script cannot be watched through that server.
//   - electrs "unavailable index" (code -32603) while its index is not ready: ErrServerBusy,
//     retry later.
//   - Fulcrum "Subscription limit reached" (code 4; max_subs_per_ip, default 75,000, and
//     max_subs, 10 million): ErrSubscriptionLimit.
var (
	// ErrBadRequest: code 1 (ElectrumX BAD_REQUEST): bad parameters, rejected broadcast, unknown
	// transaction, "still catching up with daemon", …
	ErrBadRequest = errors.New("electrum: bad request")
	// ErrDaemonError: code 2 (ElectrumX DAEMON_ERROR): the server's node failed the call.
	ErrDaemonError = errors.New("electrum: server's node error")
	// ErrHistoryTooLarge: code 10001 (protocol 1.7 RPC_ERROR_HISTORY_TOO_LONG) or, from older
	// ElectrumX (1.18 answers code 1), the message "history too large": the script's history
	// exceeds the server's response limit (ElectrumX: MAX_SEND / 99 items).
	ErrHistoryTooLarge = errors.New("electrum: history too large")
	// ErrExcessiveResourceUsage: code -101 (aiorpcx EXCESSIVE_RESOURCE_USAGE): the session's
	// cost passed the server's hard limit; ElectrumX disconnects right after.
	ErrExcessiveResourceUsage = errors.New("electrum: excessive resource usage")
	// ErrServerBusy: code -102 (aiorpcx SERVER_BUSY, "server busy - request timed out"): the
	// server throttled the request past its own timeout; or electrs's "unavailable index"
	// (its index is not ready yet). Retry later, slower.
	ErrServerBusy = errors.New("electrum: server busy")
	// ErrSubscriptionLimit: Fulcrum's code 4 "Subscription limit reached": the session (or its
	// IP address) holds as many scripthash subscriptions as the server allows; more scripts
	// cannot be watched on this server.
	ErrSubscriptionLimit = errors.New("electrum: subscription limit reached")
	// ErrMethodNotFound: code -32601 (JSON-RPC 2.0): the server does not know the method.
	ErrMethodNotFound = errors.New("electrum: method not found")
	// ErrInvalidParams: code -32602 (JSON-RPC 2.0) or -32600 (invalid request).
	ErrInvalidParams = errors.New("electrum: invalid request or params")
	// ErrServerInternal: code -32603 or any other code.
	ErrServerInternal = errors.New("electrum: server error")
)

// JSON-RPC error codes the kinds above are chosen by.
const (
	CodeBadRequest             = 1
	CodeDaemonError            = 2
	CodeHistoryTooLarge        = 10001
	CodeFulcrumLimitExceeded   = 4 // Fulcrum RPC::Code_App_LimitExceeded
	CodeExcessiveResourceUsage = -101
	CodeServerBusy             = -102
	CodeInvalidRequest         = -32600
	CodeMethodNotFound         = -32601
	CodeInvalidParams          = -32602
	CodeInternalError          = -32603
	msgHistoryTooLarge         = "history too large"
	msgExcessiveResourceUsage  = "excessive resource usage"
	msgServerBusy              = "server busy"
	msgFulcrumMaxHistory       = "exceeds max history"                    // Fulcrum Storage.cpp
	msgElectrsLookupLimit      = "index entries, query may take too long" // electrs ≤ 0.11
	msgElectrsUnavailableIndex = "unavailable index"                      // electrs 0.12
	msgSubscriptionLimit       = "subscription limit reached"             // Fulcrum
)

// ServerError is a JSON-RPC error object returned by the server for one request
// ({"code": int, "message": string}). It unwraps to its kind (ErrBadRequest,
// ErrHistoryTooLarge, ErrServerBusy, …; see Kind).
type ServerError struct {
	Method  string
	Code    int
	Message string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("electrum: %s: server error %d: %s", e.Method, e.Code, e.Message)
}

// Unwrap returns the error's kind, so that errors.Is(err, ErrHistoryTooLarge) works.
func (e *ServerError) Unwrap() error { return e.Kind() }

// Kind maps the code and message to one of the kind sentinels above.
func (e *ServerError) Kind() error {
	msg := strings.ToLower(e.Message)
	switch {
	case e.Code == CodeHistoryTooLarge || strings.Contains(msg, msgHistoryTooLarge) ||
		strings.Contains(msg, msgFulcrumMaxHistory) || strings.Contains(msg, msgElectrsLookupLimit):
		return ErrHistoryTooLarge
	case strings.Contains(msg, msgSubscriptionLimit):
		return ErrSubscriptionLimit
	case e.Code == CodeInternalError && msg == msgElectrsUnavailableIndex:
		return ErrServerBusy
	case e.Code == CodeExcessiveResourceUsage || strings.Contains(msg, msgExcessiveResourceUsage):
		return ErrExcessiveResourceUsage
	case e.Code == CodeServerBusy || strings.HasPrefix(msg, msgServerBusy):
		return ErrServerBusy
	case e.Code == CodeBadRequest:
		return ErrBadRequest
	case e.Code == CodeDaemonError:
		return ErrDaemonError
	case e.Code == CodeMethodNotFound:
		return ErrMethodNotFound
	case e.Code == CodeInvalidParams || e.Code == CodeInvalidRequest:
		return ErrInvalidParams
	}
	return ErrServerInternal
}
