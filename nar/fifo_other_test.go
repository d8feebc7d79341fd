//go:build !unix

package nar

import "errors"

func mkfifo(string) error { return errors.New("no FIFOs here") }
