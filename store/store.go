package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strconv"
	"strings"

	_ "github.com/mattn/go-sqlite3" // SQLite driver (cgo)
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// DB is cosigner's database handle. It is safe for concurrent use; SQLite serialises writers and
// busy_timeout makes a second process (for example `cosigner bunker-uri` while `cosigner run` is
// up) wait instead of failing.
type DB struct {
	SQL *sql.DB
	// txTurn serialises this process's transactions (Tx) in Go, in the order they ask. Each
	// takes SQLite's write lock at BEGIN (_txlock=immediate), and a connection that finds it
	// taken waits in SQLite's busy handler, which sleeps in growing steps (up to 100 ms each)
	// instead of waking when the lock is free; waiting here, a transaction starts as soon as
	// the one before it has committed.
	txTurn chan struct{}
	// seen is the one connection that writes the NIP-46 replay set (FirstSeenEvent), kept out
	// of the pool with synchronous=NORMAL: its commits skip the fsync that every other
	// transaction (synchronous=FULL) makes. Why that cannot lose a replay that matters is in
	// seen.go and docs/flood-and-retention.md ("The replay set and crashes"). Used only inside
	// a txTurn turn.
	seen *sql.Conn
}

// Open opens (creating if needed) the SQLite database at path in WAL mode with foreign keys on,
// and applies every migration in migrations/ that has not been applied yet, each in its own
// transaction. It returns an error wrapping the failing migration's file name. The database
// directory is made private first (0700; ErrSharedDataDir when it is group- or
// world-accessible and belongs to another user), and the database, -wal and -shm files are
// 0600 whatever the umask.
func Open(ctx context.Context, path string) (*DB, error) {
	if err := prepareFiles(path); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_busy_timeout", "10000")
	q.Set("_foreign_keys", "on")
	q.Set("_synchronous", "FULL")
	q.Set("_txlock", "immediate")
	// _stmt_cache_size is the driver's cache of prepared statements per connection (not a
	// pragma; durability and every write are unchanged): the request path runs the same few
	// statements on every sign_psbt, and preparing them again was ~13 % of its CPU. A cached
	// statement is reset before reuse, and SQLite re-prepares it when the schema changes.
	q.Set("_stmt_cache_size", "64")
	sqldb, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := sqldb.PingContext(ctx); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db := &DB{SQL: sqldb, txTurn: make(chan struct{}, 1)}
	if err := db.migrate(ctx); err != nil {
		sqldb.Close()
		return nil, err
	}
	if db.seen, err = seenConn(ctx, sqldb); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := privateFiles(path); err != nil {
		sqldb.Close()
		return nil, err
	}
	return db, nil
}

// Close closes the database.
func (db *DB) Close() error {
	return errors.Join(db.seen.Close(), db.SQL.Close())
}

type migration struct {
	version int
	name    string
}

// migrations lists the embedded files named NNNN_description.sql in version order.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		if !ok || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("store: migration file %q is not named NNNN_description.sql", name)
		}
		v, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("store: migration file %q: %w", name, err)
		}
		out = append(out, migration{version: v, name: name})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("store: two migrations with version %d", out[i].version)
		}
	}
	return out, nil
}

func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.SQL.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL DEFAULT (unixepoch()))`); err != nil {
		return fmt.Errorf("store: create schema_migrations: %w", err)
	}
	ms, err := migrations()
	if err != nil {
		return err
	}
	for _, m := range ms {
		err := db.Tx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			body, err := migrationFiles.ReadFile("migrations/" + m.name)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, name) VALUES (?, ?)`, m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("store: migration %s: %w", m.name, err)
		}
	}
	return nil
}

// Tx runs fn inside one immediate-mode transaction and commits it if fn returns nil; otherwise
// it rolls back and returns fn's error. The process's transactions run one at a time, in the
// order they asked (DB.txTurn); fn must not call Tx. When ctx ends while it waits for its turn,
// Tx returns an error wrapping ctx's.
func (db *DB) Tx(ctx context.Context, fn func(*sql.Tx) error) error {
	return db.txOn(ctx, nil, fn)
}

// txOn is Tx on conn (nil: a connection of the pool).
func (db *DB) txOn(ctx context.Context, conn *sql.Conn, fn func(*sql.Tx) error) error {
	select {
	case db.txTurn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("store: begin: %w", ctx.Err())
	}
	defer func() { <-db.txTurn }()
	var tx *sql.Tx
	var err error
	if conn != nil {
		tx, err = conn.BeginTx(ctx, nil)
	} else {
		tx, err = db.SQL.BeginTx(ctx, nil)
	}
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
			return errors.Join(err, rbErr)
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}
