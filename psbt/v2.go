package psbt

// PSBT version 2 (BIP-370), as a decoder and encoder around btcd's v0-only psbt package.
//
// btcutil/psbt parses only BIP-174 v0 (v1.1.8 here; v1.1.10, served by exact version, also reads
// PSBT_GLOBAL_XPUB into Packet.XPubs where this code keeps them as Unknowns: not taken yet), whose global
// map carries the unsigned transaction. A v2 PSBT instead spreads the transaction over per-input
// and per-output fields. decodeV2 reads the v2 key-value maps, rebuilds the unsigned transaction
// from PSBT_GLOBAL_TX_VERSION, the lock time (BIP-370 "Determining Lock Time"),
// PSBT_IN_PREVIOUS_TXID / PSBT_IN_OUTPUT_INDEX / PSBT_IN_SEQUENCE and PSBT_OUT_AMOUNT /
// PSBT_OUT_SCRIPT, and hands btcd a v0 stream: that transaction followed by every original
// key-value pair. btcd keeps the v2-only pairs as Unknowns, so nothing is lost, and encodeV2
// turns a packet carrying PSBT_GLOBAL_VERSION = 2 back into v2 by dropping the unsigned
// transaction again. The packet's own fields (UnsignedTx, Inputs, Outputs) are what analysis
// and signing read, whatever the version.
//
// Spec: https://github.com/bitcoin/bips/blob/master/bip-0370.mediawiki

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// BIP-370 key types (BIP-174 "Specification" table).
const (
	globalUnsignedTx       = 0x00
	globalTxVersion        = 0x02
	globalFallbackLocktime = 0x03
	globalInputCount       = 0x04
	globalOutputCount      = 0x05
	globalTxModifiable     = 0x06
	globalVersion          = 0xfb

	inPreviousTxID          = 0x0e
	inOutputIndex           = 0x0f
	inSequence              = 0x10
	inRequiredTimeLocktime  = 0x11
	inRequiredHeightLocktim = 0x12

	outAmount = 0x03
	outScript = 0x04
)

// lockTimeThreshold separates block heights from UNIX times in nLockTime (BIP-65).
const lockTimeThreshold = 500_000_000

// maxV2Count bounds PSBT_GLOBAL_INPUT_COUNT / OUTPUT_COUNT: each map needs at least one byte,
// so a count above the PSBT's size is a lie.
const maxV2Count = MaxPSBTBytes

// errV2 marks a v2 structure error; the message says which rule.
var errV2 = errors.New("invalid PSBT v2")

// kv is one key-value pair; key is the whole key (type and key data).
type kv struct {
	key, value []byte
}

// keyType returns the pair's key type (a compact size; every BIP-174/370/371 type fits one byte,
// larger ones are returned as-is for "unknown").
func (p kv) keyType() uint64 {
	t, err := wire.ReadVarInt(bytes.NewReader(p.key), 0)
	if err != nil {
		return ^uint64(0)
	}
	return t
}

// readMap reads one key-value map up to its 0x00 separator (BIP-174 "Specification").
func readMap(r *bytes.Reader) ([]kv, error) {
	var out []kv
	seen := map[string]bool{}
	for {
		klen, err := wire.ReadVarInt(r, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: truncated key length", errV2)
		}
		if klen == 0 {
			return out, nil
		}
		if klen > uint64(r.Len()) {
			return nil, fmt.Errorf("%w: key longer than the PSBT", errV2)
		}
		key := make([]byte, klen)
		if _, err := io.ReadFull(r, key); err != nil {
			return nil, fmt.Errorf("%w: truncated key", errV2)
		}
		vlen, err := wire.ReadVarInt(r, 0)
		if err != nil || vlen > uint64(r.Len()) {
			return nil, fmt.Errorf("%w: truncated value", errV2)
		}
		val := make([]byte, vlen)
		if _, err := io.ReadFull(r, val); err != nil {
			return nil, fmt.Errorf("%w: truncated value", errV2)
		}
		if seen[string(key)] {
			return nil, fmt.Errorf("%w: duplicate key %x", errV2, key)
		}
		seen[string(key)] = true
		out = append(out, kv{key, val})
	}
}

func writeMap(w *bytes.Buffer, m []kv) {
	for _, p := range m {
		_ = wire.WriteVarBytes(w, 0, p.key)
		_ = wire.WriteVarBytes(w, 0, p.value)
	}
	w.WriteByte(0)
}

// field returns the value of the key-data-free field of type t in m. A field of that type with
// key data is a structure error for the BIP-370 fields this file reads.
func field(m []kv, t uint64) ([]byte, bool, error) {
	for _, p := range m {
		if p.keyType() == t {
			if len(p.key) != 1 {
				return nil, false, fmt.Errorf("%w: key type %#x must have no key data", errV2, t)
			}
			return p.value, true, nil
		}
	}
	return nil, false, nil
}

func u32Field(m []kv, t uint64, name string) (uint32, bool, error) {
	v, ok, err := field(m, t)
	if err != nil || !ok {
		return 0, ok, err
	}
	if len(v) != 4 {
		return 0, false, fmt.Errorf("%w: %s must be 4 bytes, got %d", errV2, name, len(v))
	}
	return binary.LittleEndian.Uint32(v), true, nil
}

func countField(m []kv, t uint64, name string) (int, error) {
	v, ok, err := field(m, t)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%w: %s is missing", errV2, name)
	}
	r := bytes.NewReader(v)
	n, err := wire.ReadVarInt(r, 0)
	if err != nil || r.Len() != 0 {
		return 0, fmt.Errorf("%w: %s is not a compact size", errV2, name)
	}
	if n > maxV2Count {
		return 0, fmt.Errorf("%w: %s of %d is more than the PSBT can hold", errV2, name, n)
	}
	return int(n), nil
}

// globalVersionOf returns PSBT_GLOBAL_VERSION of a global map (0 when absent).
func globalVersionOf(global []kv) (uint32, error) {
	v, _, err := u32Field(global, globalVersion, "PSBT_GLOBAL_VERSION")
	return v, err
}

// v0Forbidden lists the BIP-370 fields that a v0 PSBT must not carry ("PSBT_GLOBAL_TX_VERSION
// … excluded from v0"), by map: global, input, output.
var (
	v0ForbiddenGlobal = map[byte]string{globalTxVersion: "PSBT_GLOBAL_TX_VERSION", globalFallbackLocktime: "PSBT_GLOBAL_FALLBACK_LOCKTIME",
		globalInputCount: "PSBT_GLOBAL_INPUT_COUNT", globalOutputCount: "PSBT_GLOBAL_OUTPUT_COUNT", globalTxModifiable: "PSBT_GLOBAL_TX_MODIFIABLE"}
	v0ForbiddenInput = map[byte]string{inPreviousTxID: "PSBT_IN_PREVIOUS_TXID", inOutputIndex: "PSBT_IN_OUTPUT_INDEX", inSequence: "PSBT_IN_SEQUENCE",
		inRequiredTimeLocktime: "PSBT_IN_REQUIRED_TIME_LOCKTIME", inRequiredHeightLocktim: "PSBT_IN_REQUIRED_HEIGHT_LOCKTIME"}
	v0ForbiddenOutput = map[byte]string{outAmount: "PSBT_OUT_AMOUNT", outScript: "PSBT_OUT_SCRIPT"}
)

// checkV0 refuses a v0 packet (as btcd parsed it) that carries v2-only fields or a version.
func checkV0(p *psbt.Packet) error {
	for _, u := range p.Unknowns {
		if len(u.Key) == 1 {
			if name, bad := v0ForbiddenGlobal[u.Key[0]]; bad {
				return fmt.Errorf("%w: a v0 PSBT must not carry %s", errV2, name)
			}
		}
	}
	for i, in := range p.Inputs {
		for _, u := range in.Unknowns {
			if name, bad := v0ForbiddenInput[u.Key[0]]; bad && len(u.Key) == 1 {
				return fmt.Errorf("%w: input %d of a v0 PSBT carries %s", errV2, i, name)
			}
		}
	}
	for i, out := range p.Outputs {
		for _, u := range out.Unknowns {
			if name, bad := v0ForbiddenOutput[u.Key[0]]; bad && len(u.Key) == 1 {
				return fmt.Errorf("%w: output %d of a v0 PSBT carries %s", errV2, i, name)
			}
		}
	}
	return nil
}

// decodeRaw parses raw PSBT bytes of version 0 or 2 into btcd's packet shape.
func decodeRaw(raw []byte) (*psbt.Packet, error) {
	r := bytes.NewReader(raw)
	var magic [5]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil || !bytes.Equal(magic[:], []byte("psbt\xff")) {
		return nil, fmt.Errorf("%w: bad magic", errV2)
	}
	global, err := readMap(r)
	if err != nil {
		return nil, err
	}
	version, err := globalVersionOf(global)
	if err != nil {
		return nil, err
	}
	switch version {
	case 0:
		p, err := decodeV0(raw, r, global)
		if err != nil {
			return nil, err
		}
		if err := checkV0(p); err != nil {
			return nil, err
		}
		return p, nil
	case 2:
		return decodeV2(r, global)
	default:
		return nil, fmt.Errorf("%w: PSBT version %d is not supported (0 and 2 are)", errV2, version)
	}
}

// decodeV2 reads the input and output maps after global and rebuilds the v0 shape.
func decodeV2(r *bytes.Reader, global []kv) (*psbt.Packet, error) {
	g, err := readV2Global(global)
	if err != nil {
		return nil, err
	}
	tx := wire.NewMsgTx(int32(g.txVersion))
	ins := make([][]kv, g.nIn)
	var heightLocks, timeLocks []*uint32 // per input; nil when the input has none
	heightLocks, timeLocks = make([]*uint32, g.nIn), make([]*uint32, g.nIn)
	for i := range ins {
		m, in, err := readV2Input(r, i)
		if err != nil {
			return nil, err
		}
		if heightLocks[i], timeLocks[i], err = requiredLocks(m, i); err != nil {
			return nil, err
		}
		ins[i] = m
		tx.AddTxIn(in)
	}
	outs := make([][]kv, g.nOut)
	for j := range outs {
		m, out, err := readV2Output(r, j)
		if err != nil {
			return nil, err
		}
		outs[j] = m
		tx.AddTxOut(out)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last output map", errV2, r.Len())
	}
	if tx.LockTime, err = determineLockTime(g.fallback, heightLocks, timeLocks); err != nil {
		return nil, err
	}
	return v0Packet(tx, global, ins, outs)
}

// v2Global is what a v2 global map says about the transaction.
type v2Global struct {
	txVersion, fallback uint32
	nIn, nOut           int
}

// readV2Global checks a v2 global map (no PSBT_GLOBAL_UNSIGNED_TX; PSBT_GLOBAL_TX_VERSION and
// the counts present; TX_MODIFIABLE one byte) and returns its transaction fields.
func readV2Global(global []kv) (v2Global, error) {
	var g v2Global
	if _, ok, _ := field(global, globalUnsignedTx); ok {
		return g, fmt.Errorf("%w: a v2 PSBT must not carry PSBT_GLOBAL_UNSIGNED_TX", errV2)
	}
	var ok bool
	var err error
	if g.txVersion, ok, err = u32Field(global, globalTxVersion, "PSBT_GLOBAL_TX_VERSION"); err != nil {
		return g, err
	}
	if !ok {
		return g, fmt.Errorf("%w: PSBT_GLOBAL_TX_VERSION is missing", errV2)
	}
	if g.fallback, _, err = u32Field(global, globalFallbackLocktime, "PSBT_GLOBAL_FALLBACK_LOCKTIME"); err != nil {
		return g, err
	}
	if v, ok, err := field(global, globalTxModifiable); err != nil {
		return g, err
	} else if ok && len(v) != 1 {
		return g, fmt.Errorf("%w: PSBT_GLOBAL_TX_MODIFIABLE must be 1 byte", errV2)
	}
	if g.nIn, err = countField(global, globalInputCount, "PSBT_GLOBAL_INPUT_COUNT"); err != nil {
		return g, err
	}
	if g.nOut, err = countField(global, globalOutputCount, "PSBT_GLOBAL_OUTPUT_COUNT"); err != nil {
		return g, err
	}
	return g, nil
}

// readV2Input reads input map i and the transaction input it describes (PSBT_IN_PREVIOUS_TXID,
// PSBT_IN_OUTPUT_INDEX, PSBT_IN_SEQUENCE defaulting to final).
func readV2Input(r *bytes.Reader, i int) ([]kv, *wire.TxIn, error) {
	m, err := readMap(r)
	if err != nil {
		return nil, nil, fmt.Errorf("input %d: %w", i, err)
	}
	txid, ok, err := field(m, inPreviousTxID)
	if err != nil {
		return nil, nil, err
	}
	if !ok || len(txid) != chainhash.HashSize {
		return nil, nil, fmt.Errorf("%w: input %d: PSBT_IN_PREVIOUS_TXID missing or not 32 bytes", errV2, i)
	}
	vout, ok, err := u32Field(m, inOutputIndex, "PSBT_IN_OUTPUT_INDEX")
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, fmt.Errorf("%w: input %d: PSBT_IN_OUTPUT_INDEX is missing", errV2, i)
	}
	seq, ok, err := u32Field(m, inSequence, "PSBT_IN_SEQUENCE")
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		seq = wire.MaxTxInSequenceNum
	}
	var hash chainhash.Hash
	copy(hash[:], txid)
	in := wire.NewTxIn(wire.NewOutPoint(&hash, vout), nil, nil)
	in.Sequence = seq
	return m, in, nil
}

// requiredLocks returns input map i's PSBT_IN_REQUIRED_HEIGHT_LOCKTIME and
// PSBT_IN_REQUIRED_TIME_LOCKTIME (nil when absent), each checked to be of its kind.
func requiredLocks(m []kv, i int) (height, time *uint32, err error) {
	if t, ok, err := u32Field(m, inRequiredTimeLocktime, "PSBT_IN_REQUIRED_TIME_LOCKTIME"); err != nil {
		return nil, nil, err
	} else if ok {
		if t < lockTimeThreshold {
			return nil, nil, fmt.Errorf("%w: input %d: PSBT_IN_REQUIRED_TIME_LOCKTIME %d is below %d (a height)", errV2, i, t, lockTimeThreshold)
		}
		time = &t
	}
	if h, ok, err := u32Field(m, inRequiredHeightLocktim, "PSBT_IN_REQUIRED_HEIGHT_LOCKTIME"); err != nil {
		return nil, nil, err
	} else if ok {
		if h == 0 || h >= lockTimeThreshold {
			return nil, nil, fmt.Errorf("%w: input %d: PSBT_IN_REQUIRED_HEIGHT_LOCKTIME %d is not a height in 1…%d", errV2, i, h, lockTimeThreshold-1)
		}
		height = &h
	}
	return height, time, nil
}

// readV2Output reads output map j and the transaction output it describes (PSBT_OUT_AMOUNT,
// PSBT_OUT_SCRIPT).
func readV2Output(r *bytes.Reader, j int) ([]kv, *wire.TxOut, error) {
	m, err := readMap(r)
	if err != nil {
		return nil, nil, fmt.Errorf("output %d: %w", j, err)
	}
	amt, ok, err := field(m, outAmount)
	if err != nil {
		return nil, nil, err
	}
	if !ok || len(amt) != 8 {
		return nil, nil, fmt.Errorf("%w: output %d: PSBT_OUT_AMOUNT missing or not 8 bytes", errV2, j)
	}
	script, ok, err := field(m, outScript)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, fmt.Errorf("%w: output %d: PSBT_OUT_SCRIPT is missing", errV2, j)
	}
	return m, wire.NewTxOut(int64(binary.LittleEndian.Uint64(amt)), script), nil
}

// v0Packet has btcd parse the v0 stream of a v2 PSBT: the rebuilt unsigned transaction, then
// every original pair (btcd keeps the v2-only ones as Unknowns).
func v0Packet(tx *wire.MsgTx, global []kv, ins, outs [][]kv) (*psbt.Packet, error) {
	var buf bytes.Buffer
	buf.WriteString("psbt\xff")
	var txBuf bytes.Buffer
	if err := tx.SerializeNoWitness(&txBuf); err != nil {
		return nil, err
	}
	writeMap(&buf, append([]kv{{key: []byte{globalUnsignedTx}, value: txBuf.Bytes()}}, global...))
	for _, m := range ins {
		writeMap(&buf, m)
	}
	for _, m := range outs {
		writeMap(&buf, m)
	}
	raw := buf.Bytes()
	r := bytes.NewReader(raw)
	_, _ = r.Seek(5, io.SeekStart) // the magic just written
	g, err := readMap(r)
	if err != nil {
		return nil, err
	}
	return decodeV0(raw, r, g)
}

// determineLockTime applies BIP-370 "Determining Lock Time": without any required lock time the
// fallback is used; otherwise the type every input with a requirement supports (height when
// both are possible) and the largest value of that type.
func determineLockTime(fallback uint32, heights, times []*uint32) (uint32, error) {
	any, heightOK, timeOK := false, true, true
	for i := range heights {
		if heights[i] == nil && times[i] == nil {
			continue
		}
		any = true
		heightOK = heightOK && heights[i] != nil
		timeOK = timeOK && times[i] != nil
	}
	if !any {
		return fallback, nil
	}
	var pick []*uint32
	switch {
	case heightOK:
		pick = heights
	case timeOK:
		pick = times
	default:
		return 0, fmt.Errorf("%w: the inputs require both a height and a time lock; no lock time satisfies them all", errV2)
	}
	var lock uint32
	for _, v := range pick {
		if v != nil && *v > lock {
			lock = *v
		}
	}
	return lock, nil
}

// isV2 tells whether p came from a v2 PSBT (it carries PSBT_GLOBAL_VERSION = 2).
func isV2(p *psbt.Packet) bool {
	return PSBTVersion(p) == 2
}

// PSBTVersion returns the packet's PSBT_GLOBAL_VERSION: 0 for BIP-174 v0 packets (and any
// packet without the field), 2 for packets decoded from BIP-370 v2.
func PSBTVersion(p *psbt.Packet) uint32 {
	for _, u := range p.Unknowns {
		if len(u.Key) == 1 && u.Key[0] == globalVersion && len(u.Value) == 4 {
			return binary.LittleEndian.Uint32(u.Value)
		}
	}
	return 0
}

// TxModifiable returns the PSBT_GLOBAL_TX_MODIFIABLE flags of a v2 packet (bit 0 inputs
// modifiable, bit 1 outputs modifiable, bit 2 has SIGHASH_SINGLE) and whether the field is present.
func TxModifiable(p *psbt.Packet) (byte, bool) {
	for _, u := range p.Unknowns {
		if len(u.Key) == 1 && u.Key[0] == globalTxModifiable && len(u.Value) == 1 {
			return u.Value[0], true
		}
	}
	return 0, false
}

// encodeV2 writes p (decoded from v2) as v2 again: btcd's v0 serialization without the unsigned
// transaction; every v2 field is still among the pairs, as Unknowns.
func encodeV2(p *psbt.Packet) ([]byte, error) {
	var v0 bytes.Buffer
	if err := p.Serialize(&v0); err != nil {
		return nil, err
	}
	r := bytes.NewReader(v0.Bytes()[5:])
	global, err := readMap(r)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.WriteString("psbt\xff")
	kept := global[:0]
	for _, g := range global {
		if g.keyType() != globalUnsignedTx {
			kept = append(kept, g)
		}
	}
	writeMap(&out, kept)
	out.Write(v0.Bytes()[5+int(r.Size())-r.Len():])
	return out.Bytes(), nil
}
