package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// get GETs u with c and hands a 200 answer's body to read; any other
// status is an error naming u.
func get(ctx context.Context, c *http.Client, u string, read func(io.Reader) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return read(resp.Body)
}

// decodeJSON is a read for get that decodes the body into v.
func decodeJSON(v any) func(io.Reader) error {
	return func(r io.Reader) error { return json.NewDecoder(r).Decode(v) }
}
