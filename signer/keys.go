package signer

import "github.com/custodyagents/cosigner/keystore"

// Keys at rest live in package keystore; these names keep the old signer API while the callers
// move.

// Deprecated: use keystore.KeyFile.
type KeyFile = keystore.KeyFile

// Deprecated: use keystore.PublicInfo.
type PublicInfo = keystore.PublicInfo

// Deprecated: use keystore.Keys.
type Keys = keystore.Keys

// Deprecated: use keystore.AccountPathFor.
var AccountPathFor = keystore.AccountPathFor

// Deprecated: use keystore.CreateKeyFile.
var CreateKeyFile = keystore.CreateKeyFile

// Deprecated: use keystore.ReadPublic.
var ReadPublic = keystore.ReadPublic

// Deprecated: use keystore.LoadKeyFile.
var LoadKeyFile = keystore.LoadKeyFile

// Deprecated: use keystore.UpgradeKeyFile.
var UpgradeKeyFile = keystore.UpgradeKeyFile

// Deprecated: use keystore.EncryptNcryptsec.
var EncryptNcryptsec = keystore.EncryptNcryptsec

// Deprecated: use keystore.DecryptNcryptsec.
var DecryptNcryptsec = keystore.DecryptNcryptsec

// Deprecated: use keystore.NewKeys.
var NewKeys = keystore.NewKeys
