package store

import (
	"context"
	"database/sql"
	"fmt"
)

// queryRows runs query on q and returns one T per row, read by scan, in the query's order. A
// failing query or scan is wrapped as "store: <what>: <cause>"; the rows' final error
// (rows.Err) is returned as it is.
func queryRows[T any](ctx context.Context, q querier, what string, scan func(*sql.Rows) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// eachRow runs query on q and calls fn on each row in order, closing the rows at the end. A
// failing query, an error of fn and the rows' final error are all wrapped as
// "store: <what>: <cause>".
func eachRow(ctx context.Context, q querier, what, query string, fn func(*sql.Rows) error) error {
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	return nil
}
