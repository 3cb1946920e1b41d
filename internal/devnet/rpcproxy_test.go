package devnet

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// fakeBtcd answers like btcd v0.24.2 for the few calls the proxy's bridges
// make, and records every request it was sent. Unit tests of the rewriting
// only; the integration test runs against the real btcd.
type fakeBtcd struct {
	sent        [][]rpcRequest
	estimateErr bool
}

func (f *fakeBtcd) call(_ context.Context, reqs []rpcRequest) ([]rpcResponse, error) {
	f.sent = append(f.sent, reqs)
	var out []rpcResponse
	for _, r := range reqs {
		resp := rpcResponse{JSONRPC: r.JSONRPC, ID: r.ID, Result: json.RawMessage("null"), Error: json.RawMessage("null")}
		switch r.Method {
		case "getinfo":
			resp.Result = json.RawMessage(`{"version":240200,"protocolversion":70002,"blocks":450,"timeoffset":0,"connections":0,"proxy":"","difficulty":1,"testnet":false,"relayfee":0.00001,"errors":""}`)
		case "estimatefee":
			if f.estimateErr {
				resp.Result = json.RawMessage("-1")
				resp.Error = json.RawMessage(`{"code":-32600,"message":"Invalid request: malformed"}`)
			} else {
				resp.Result = json.RawMessage("0.0002")
			}
		default:
			resp.Result = json.RawMessage(`"forwarded:` + r.Method + `"`)
		}
		out = append(out, resp)
	}
	// btcd may answer a batch in any order.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

func TestRewriteRequest(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		wantParams  string
		wantChanged bool
	}{
		{"getblock verbose true becomes 1", `{"method":"getblock","params":["00ab",true],"id":1}`, `["00ab",1]`, true},
		{"getblock verbose false becomes 0", `{"method":"getblock","params":["00ab",false],"id":1}`, `["00ab",0]`, true},
		{"getblock integer verbosity untouched", `{"method":"getblock","params":["00ab",2],"id":1}`, `["00ab",2]`, false},
		{"getblock without verbosity untouched", `{"method":"getblock","params":["00ab"],"id":1}`, `["00ab"]`, false},
		{"getrawtransaction verbose true and block hash become 1 (electrs)", `{"method":"getrawtransaction","params":["00ab",true,"00cd"],"id":1}`, `["00ab",1]`, true},
		{"getrawtransaction verbose false and null block hash become 0", `{"method":"getrawtransaction","params":["00ab",false,null],"id":1}`, `["00ab",0]`, true},
		{"getrawtransaction integer verbosity untouched", `{"method":"getrawtransaction","params":["00ab",1],"id":1}`, `["00ab",1]`, false},
		{"getrawtransaction txid only untouched (electrs' mempool batch)", `{"method":"getrawtransaction","params":["00ab"],"id":1}`, `["00ab"]`, false},
		{"other methods untouched", `{"method":"decoderawtransaction","params":["00ab",true],"id":1}`, `["00ab",true]`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req rpcRequest
			if err := json.Unmarshal([]byte(tt.in), &req); err != nil {
				t.Fatal(err)
			}
			orig, _ := json.Marshal(req.Params)
			out, changed := rewriteRequest(req)
			if changed != tt.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tt.wantChanged)
			}
			got, _ := json.Marshal(out.Params)
			if string(got) != tt.wantParams {
				t.Errorf("params = %s, want %s", got, tt.wantParams)
			}
			after, _ := json.Marshal(req.Params)
			if string(after) != string(orig) {
				t.Errorf("rewriteRequest changed its input: %s → %s", orig, after)
			}
		})
	}
}

func TestHandleBodyBatch(t *testing.T) {
	f := &fakeBtcd{}
	body := `[
		{"method":"getblockhash","params":[1],"id":7},
		{"method":"getnetworkinfo","id":8},
		{"method":"getblock","params":["00ab",false],"id":7},
		{"jsonrpc":"2.0","method":"getblockcount","params":[],"id":"x"}
	]`
	reply, err := handleBody(context.Background(), []byte(body), f.call)
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]json.RawMessage
	if err := json.Unmarshal(reply, &got); err != nil {
		t.Fatalf("reply is not a batch: %s", reply)
	}
	if len(got) != 4 {
		t.Fatalf("got %d answers, want 4: %s", len(got), reply)
	}
	// Order and ids are the request's, even with a repeated id.
	wantIDs := []string{`7`, `8`, `7`, `"x"`}
	for i, w := range wantIDs {
		if string(got[i]["id"]) != w {
			t.Errorf("answer %d id = %s, want %s", i, got[i]["id"], w)
		}
	}
	if string(got[0]["result"]) != `"forwarded:getblockhash"` || string(got[2]["result"]) != `"forwarded:getblock"` {
		t.Errorf("forwarded results = %s, %s", got[0]["result"], got[2]["result"])
	}
	if _, has := got[0]["jsonrpc"]; has {
		t.Errorf("answer to a request without jsonrpc has one: %s", reply)
	}
	if string(got[3]["jsonrpc"]) != `"2.0"` {
		t.Errorf("answer to a 2.0 request: jsonrpc = %s", got[3]["jsonrpc"])
	}
	var info map[string]any
	if err := json.Unmarshal(got[1]["result"], &info); err != nil {
		t.Fatalf("getnetworkinfo result: %s", got[1]["result"])
	}
	if info["version"] != 240200.0 || info["relayfee"] != 0.00001 || info["subversion"] != "/btcd:0.24.2/" {
		t.Errorf("getnetworkinfo = %v", info)
	}

	// What btcd saw: getinfo for the bridge, then one batch of the other three,
	// each with "jsonrpc" and the getblock flag as an integer.
	if len(f.sent) != 2 || f.sent[0][0].Method != "getinfo" || len(f.sent[1]) != 3 {
		t.Fatalf("btcd was sent %+v", f.sent)
	}
	for _, r := range f.sent[1] {
		if r.JSONRPC == "" {
			t.Errorf("%s forwarded without jsonrpc", r.Method)
		}
		if r.Method == "getnetworkinfo" {
			t.Errorf("getnetworkinfo was forwarded")
		}
	}
	if gb := f.sent[1][1]; gb.Method != "getblock" || string(gb.Params[1]) != "0" {
		t.Errorf("getblock forwarded as %s %s", gb.Method, gb.Params)
	}
	if gc := f.sent[1][2]; gc.JSONRPC != "2.0" {
		t.Errorf("a 2.0 request was forwarded as %q", gc.JSONRPC)
	}
}

func TestHandleBodySingle(t *testing.T) {
	f := &fakeBtcd{}
	reply, err := handleBody(context.Background(), []byte(`{"method":"getrawmempool","id":3}`), f.call)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(string(reply), "[") {
		t.Fatalf("single request answered as a batch: %s", reply)
	}
	var got rpcResponse
	if err := json.Unmarshal(reply, &got); err != nil {
		t.Fatal(err)
	}
	if string(got.ID) != "3" || string(got.Result) != `"forwarded:getrawmempool"` || string(got.Error) != "null" {
		t.Errorf("reply = %s", reply)
	}
	if _, err := handleBody(context.Background(), []byte(`{not json`), f.call); err == nil {
		t.Error("malformed body accepted")
	}
}

func TestEstimateSmartFee(t *testing.T) {
	tests := []struct {
		name        string
		body        string
		estimateErr bool
		wantResult  map[string]any
		wantErrCode float64
	}{
		{"estimate available", `{"method":"estimatesmartfee","params":[2,"CONSERVATIVE"],"id":1}`, false,
			map[string]any{"feerate": 0.0002, "blocks": 2.0}, 0},
		{"btcd cannot estimate", `{"method":"estimatesmartfee","params":[6],"id":1}`, true,
			map[string]any{"errors": []any{"Invalid request: malformed"}, "blocks": 6.0}, 0},
		{"probe without target is a parameter error, not method-not-found", `{"method":"estimatesmartfee","id":1}`, false,
			nil, -1},
		{"bad target", `{"method":"estimatesmartfee","params":[0],"id":1}`, false, nil, -8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeBtcd{estimateErr: tt.estimateErr}
			reply, err := handleBody(context.Background(), []byte(tt.body), f.call)
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				Result map[string]any `json:"result"`
				Error  *rpcError      `json:"error"`
			}
			if err := json.Unmarshal(reply, &got); err != nil {
				t.Fatal(err)
			}
			if tt.wantResult != nil {
				if got.Error != nil || !reflect.DeepEqual(got.Result, tt.wantResult) {
					t.Errorf("reply = %s, want result %v", reply, tt.wantResult)
				}
				if len(f.sent) != 1 || f.sent[0][0].Method != "estimatefee" || string(f.sent[0][0].Params[0]) != string(json.RawMessage(fmtInt(tt.wantResult["blocks"]))) {
					t.Errorf("btcd was sent %+v", f.sent)
				}
				return
			}
			if got.Error == nil || float64(got.Error.Code) != tt.wantErrCode {
				t.Errorf("reply = %s, want error code %v", reply, tt.wantErrCode)
			}
			if got.Error != nil && got.Error.Code == -32601 {
				t.Errorf("reply says method not found: %s", reply)
			}
		})
	}
}

func fmtInt(v any) string {
	b, _ := json.Marshal(int(v.(float64)))
	return string(b)
}

func TestHandleBodyBackendError(t *testing.T) {
	boom := errors.New("connection refused")
	_, err := handleBody(context.Background(), []byte(`{"method":"getblockcount","id":1}`),
		func(context.Context, []rpcRequest) ([]rpcResponse, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the backend's", err)
	}
}

func hexDecode(s string) ([]byte, error) { return hex.DecodeString(s) }
