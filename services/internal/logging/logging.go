package logging

import (
	"io"
	"log/slog"
)

// New returns a JSON logger writing to w at level (debug, info, warn,
// error; anything else means info).
func New(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
