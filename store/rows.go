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
