package main

import (
	"io"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// hookLog writes the lines log/slog's TextHandler writes for the commands
// (cli.NewLogger: no time, "prog" first), for the few kinds of values the
// hook logs, without going through slog: its handler, attribute and
// buffer machinery touch some 13 more pages of code and heap on every call
// (perf stat page-faults, examples/bench/hooktrace), and Nix waits for the
// hook after every build.
type hookLog struct{ w io.Writer }

func (l hookLog) Info(msg string, kv ...any)  { l.log("INFO", msg, kv) }
func (l hookLog) Warn(msg string, kv ...any)  { l.log("WARN", msg, kv) }
func (l hookLog) Error(msg string, kv ...any) { l.log("ERROR", msg, kv) }

// log writes one line: level=LEVEL msg=MSG prog=nixcache-hook KEY=VALUE...
// (kv alternates keys and values: strings, ints, durations or errors).
func (l hookLog) log(level, msg string, kv []any) {
	b := make([]byte, 0, 256)
	b = append(b, "level="+level+" msg="...)
	b = appendText(b, msg)
	b = append(b, " prog=nixcache-hook"...)
	for i := 0; i+1 < len(kv); i += 2 {
		k, _ := kv[i].(string)
		b = append(append(append(b, ' '), k...), '=')
		switch v := kv[i+1].(type) {
		case string:
			b = appendText(b, v)
		case int:
			b = strconv.AppendInt(b, int64(v), 10)
		case time.Duration:
			b = appendText(b, v.String())
		case error:
			b = appendText(b, v.Error())
		default:
			b = append(b, "!BADVALUE"...)
		}
	}
	_, _ = l.w.Write(append(b, '\n'))
}

// appendText appends s as slog's TextHandler does: quoted (Go syntax) when
// it is empty or holds a space, '=', '"', a control character or anything
// unprintable, else as is.
func appendText(b []byte, s string) []byte {
	if needsQuoting(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == '=' || c == '"' {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}
