package psbt

// Decoding without decompressing the same public key twice.
//
// btcd's v0 parser checks that every key in a BIP32 derivation, a partial signature, a taproot
// internal key and a leaf script's control block is a point on the curve (btcec.ParsePubKey /
// schnorr.ParsePubKey): a modular square root per key, nine of them for a 2-in/2-out 2-of-3
// PSBT, more CPU than the two signatures the co-signer then makes. The same wallet keys arrive
// again and again, so decodeV0 takes the pairs of those types out of the maps before btcd parses
// the rest, checks each key against validKeys (a bounded set of encodings already seen to be
// points, filled by the same btcec / schnorr parsers), and attaches them to the packet exactly
// as btcd would (same fields, same order, same checks, btcd's own ReadBip32Derivation and
// ReadTaprootBip32Derivation). Whatever the pre-pass cannot read (a truncated map, a repeated
// key, a global map not led by the unsigned transaction) is handed to btcd unchanged, as before,
// so the result is btcd's in every case; TestDecodeMatchesBtcd and FuzzDecodeMatchesBtcd check
// that the two agree (packet for packet, refusal for refusal).
//
// Why the set cannot admit a bad key: it holds only encodings (exact bytes, tagged by kind:
// compressed/uncompressed or x-only) that the parser accepted; whether bytes are a valid
// encoding of a point is a fixed function of the bytes, so a hit answers exactly what parsing
// again would. It decides nothing else: which keys are ours, at which path, is still checked by
// Analyze against the registered descriptor on every request. Bound: MaxValidKeys encodings,
// least recently used evicted first; invalid encodings are never stored.

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	lru "github.com/hashicorp/golang-lru/v2"
)

// MaxValidKeys bounds validKeys (least recently used evicted first; ~100 bytes an entry).
const MaxValidKeys = 8192

// validKeys is the set of public key encodings already parsed as points, keyed by a kind byte
// ('c': btcec.ParsePubKey, 'x': schnorr.ParsePubKey) and the exact bytes.
var validKeys = func() *lru.Cache[string, struct{}] {
	c, err := lru.New[string, struct{}](MaxValidKeys)
	if err != nil {
		panic(err)
	}
	return c
}()

// validPubKey is btcd's validatePubkey (any encoding btcec.ParsePubKey accepts), memoized.
func validPubKey(b []byte) bool { return validKey('c', b) }

// validXOnlyKey is btcd's validateXOnlyPubkey (BIP-340 lift_x), memoized.
func validXOnlyKey(b []byte) bool { return validKey('x', b) }

func validKey(kind byte, b []byte) bool {
	if len(b) == 0 || len(b) > 65 {
		return false
	}
	var buf [66]byte
	buf[0] = kind
	id := string(append(buf[:1], b...))
	if validKeys.Contains(id) {
		return true
	}
	var err error
	if kind == 'x' {
		_, err = schnorr.ParsePubKey(b)
	} else {
		_, err = btcec.ParsePubKey(b)
	}
	if err != nil {
		return false // invalid encodings are not remembered: they cost a parse each time
	}
	validKeys.Add(id, struct{}{})
	return true
}

// Key types taken out of the maps for decodeV0 (BIP-174, BIP-371; btcd's InputType/OutputType).
var (
	keyedInputTypes = map[byte]bool{byte(psbt.PartialSigType): true, byte(psbt.Bip32DerivationInputType): true,
		byte(psbt.TaprootLeafScriptType): true, byte(psbt.TaprootBip32DerivationInputType): true, byte(psbt.TaprootInternalKeyInputType): true}
	keyedOutputTypes = map[byte]bool{byte(psbt.Bip32DerivationOutputType): true, byte(psbt.TaprootInternalKeyOutputType): true, byte(psbt.TaprootBip32DerivationOutputType): true}
)

// errKeyed is a key field btcd would refuse (btcd's ErrInvalidPsbtFormat / ErrInvalidKeyData).
var errKeyed = errors.New("invalid key field")

// decodeV0 parses a v0 PSBT (raw, whose global map, already read, is global and r positioned
// after it) as btcd's psbt.NewFromRawBytes does, checking public keys through validKeys.
func decodeV0(raw []byte, r *bytes.Reader, global []kv) (*psbt.Packet, error) {
	slow := func() (*psbt.Packet, error) { return btcdParse(raw) }
	if len(global) == 0 || len(global[0].key) != 1 || global[0].key[0] != globalUnsignedTx {
		return slow()
	}
	var tx wire.MsgTx
	if err := tx.DeserializeNoWitness(bytes.NewReader(global[0].value)); err != nil {
		return slow()
	}
	globalEnd := len(raw) - r.Len()
	ins := make([][]kv, len(tx.TxIn))
	for i := range ins {
		m, err := readMap(r)
		if err != nil {
			return slow()
		}
		ins[i] = m
	}
	outs := make([][]kv, len(tx.TxOut))
	for j := range outs {
		m, err := readMap(r)
		if err != nil {
			return slow()
		}
		outs[j] = m
	}
	rest := raw[len(raw)-r.Len():]

	var buf bytes.Buffer
	buf.Grow(len(raw))
	buf.Write(raw[:globalEnd])
	inKeyed := make([][]kv, len(ins))
	for i, m := range ins {
		var keep []kv
		keep, inKeyed[i] = splitKeyed(m, keyedInputTypes)
		writeMap(&buf, keep)
	}
	outKeyed := make([][]kv, len(outs))
	for j, m := range outs {
		var keep []kv
		keep, outKeyed[j] = splitKeyed(m, keyedOutputTypes)
		writeMap(&buf, keep)
	}
	buf.Write(rest)
	p, err := btcdParse(buf.Bytes())
	if err != nil {
		return nil, err
	}
	for i, m := range inKeyed {
		if err := attachInput(&p.Inputs[i], m); err != nil {
			return nil, err
		}
	}
	for j, m := range outKeyed {
		if err := attachOutput(&p.Outputs[j], m); err != nil {
			return nil, err
		}
	}
	return p, p.SanityCheck()
}

// btcdParse is psbt.NewFromRawBytes, with a panic inside btcd (v1.1.8 slices a BIP32
// derivation value shorter than its 4-byte fingerprint: raw[:4]) returned as an error: a
// client's malformed PSBT must be refused, never take the process down.
func btcdParse(raw []byte) (p *psbt.Packet, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("malformed PSBT (btcd parser: %v)", r)
		}
	}()
	return psbt.NewFromRawBytes(bytes.NewReader(raw), false)
}

// splitKeyed separates the pairs whose key type (btcd reads it as the key's first byte) is in
// types, keeping the order of each part.
func splitKeyed(m []kv, types map[byte]bool) (keep, keyed []kv) {
	for _, p := range m {
		if types[p.key[0]] {
			keyed = append(keyed, p)
		} else {
			keep = append(keep, p)
		}
	}
	return keep, keyed
}

// keyData is the key after its type byte, nil when there is none (as btcd's getKey returns it).
func keyData(p kv) []byte {
	if len(p.key) == 1 {
		return nil
	}
	return p.key[1:]
}

// attachInput adds the keyed pairs of one input map to pi as btcd's PInput.deserialize does
// (duplicates were refused by readMap: a map never repeats a key).
func attachInput(pi *psbt.PInput, m []kv) error {
	for _, p := range m {
		kd := keyData(p)
		switch psbt.InputType(p.key[0]) {
		case psbt.PartialSigType:
			if !validPubKey(kd) {
				return errKeyed
			}
			if _, err := ecdsa.ParseDERSignature(p.value); err != nil {
				return errKeyed
			}
			pi.PartialSigs = append(pi.PartialSigs, &psbt.PartialSig{PubKey: kd, Signature: p.value})
		case psbt.Bip32DerivationInputType:
			d, err := readBip32(kd, p.value)
			if err != nil {
				return err
			}
			pi.Bip32Derivation = append(pi.Bip32Derivation, d)
		case psbt.TaprootLeafScriptType:
			if len(p.value) < 1 || !validControlBlock(kd) {
				return errKeyed
			}
			pi.TaprootLeafScript = append(pi.TaprootLeafScript, &psbt.TaprootTapLeafScript{
				ControlBlock: kd, Script: p.value[:len(p.value)-1], LeafVersion: txscript.TapscriptLeafVersion(p.value[len(p.value)-1])})
		case psbt.TaprootBip32DerivationInputType:
			if !validXOnlyKey(kd) {
				return errKeyed
			}
			d, err := psbt.ReadTaprootBip32Derivation(kd, p.value)
			if err != nil {
				return err
			}
			pi.TaprootBip32Derivation = append(pi.TaprootBip32Derivation, d)
		case psbt.TaprootInternalKeyInputType:
			if kd != nil || !validXOnlyKey(p.value) {
				return errKeyed
			}
			pi.TaprootInternalKey = p.value
		}
	}
	return nil
}

// attachOutput is attachInput for an output map (btcd's POutput.deserialize).
func attachOutput(po *psbt.POutput, m []kv) error {
	for _, p := range m {
		kd := keyData(p)
		switch psbt.OutputType(p.key[0]) {
		case psbt.Bip32DerivationOutputType:
			d, err := readBip32(kd, p.value)
			if err != nil {
				return err
			}
			po.Bip32Derivation = append(po.Bip32Derivation, d)
		case psbt.TaprootInternalKeyOutputType:
			if kd != nil || !validXOnlyKey(p.value) {
				return errKeyed
			}
			po.TaprootInternalKey = p.value
		case psbt.TaprootBip32DerivationOutputType:
			if !validXOnlyKey(kd) {
				return errKeyed
			}
			d, err := psbt.ReadTaprootBip32Derivation(kd, p.value)
			if err != nil {
				return err
			}
			po.TaprootBip32Derivation = append(po.TaprootBip32Derivation, d)
		}
	}
	return nil
}

// validControlBlock is txscript.ParseControlBlock's acceptance (btcd's validateControlBlock):
// 33 + 32·m bytes, m ≤ 128, the internal key (bytes 1..32) an x-only point (memoized).
func validControlBlock(cb []byte) bool {
	n := len(cb)
	if n < txscript.ControlBlockBaseSize || n > txscript.ControlBlockMaxSize || (n-txscript.ControlBlockBaseSize)%txscript.ControlBlockNodeSize != 0 {
		return false
	}
	return validXOnlyKey(cb[1:33])
}

// readBip32 reads a PSBT_IN/OUT_BIP32_DERIVATION pair: the key must be a point, the value a
// fingerprint and a path (btcd's ReadBip32Derivation, after checking the 4-byte fingerprint is
// there, which btcd v1.1.8 does not and would panic on).
func readBip32(pub, value []byte) (*psbt.Bip32Derivation, error) {
	if !validPubKey(pub) || len(value) < 4 {
		return nil, errKeyed
	}
	fp, path, err := psbt.ReadBip32Derivation(value)
	if err != nil {
		return nil, err
	}
	return &psbt.Bip32Derivation{PubKey: pub, MasterKeyFingerprint: fp, Bip32Path: path}, nil
}
