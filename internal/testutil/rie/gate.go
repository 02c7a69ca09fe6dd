package rie

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// holdInit writes the bootstrap at path, which waits for one line on a
// named pipe made in gateDir before it runs function, and returns the pipe
// opened for reading and writing. Holding both ends keeps what
// ReleaseInit writes in the pipe until a runtime process reads it, however
// late it opens the pipe; opening a FIFO for both on Linux does not block.
func holdInit(gateDir, path, function string) (*os.File, error) {
	// Readable by all: in Managed Instances mode the function runs as
	// another user.
	if err := os.MkdirAll(gateDir, 0o755); err != nil {
		return nil, err
	}
	fifo := filepath.Join(gateDir, "release")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		return nil, fmt.Errorf("mkfifo: %w", err)
	}
	if err := os.Chmod(fifo, 0o644); err != nil { // whatever the umask
		return nil, err
	}
	gate, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(function)
	if err != nil {
		gate.Close()
		return nil, err
	}
	script := "#!/bin/sh\n" +
		"# Held until the test releases the init (rie.Config.HoldInit).\n" +
		"read -r _ < " + shellQuote(fifo) + "\n" +
		"exec " + shellQuote(abs) + ` "$@"` + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		gate.Close()
		return nil, err
	}
	return gate, nil
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ErrNotHeld is returned by ReleaseInit for an emulator started without
// Config.HoldInit.
var ErrNotHeld = errors.New("rie: the init is not held (Config.HoldInit)")

// ReleaseInit lets the function's init go on (Config.HoldInit): every
// runtime process waiting on the gate, or starting later, runs the
// function. It does not wait for the init to end.
func (e *Emulator) ReleaseInit() error {
	if e.gate == nil {
		return ErrNotHeld
	}
	if _, err := e.gate.WriteString(strings.Repeat("go\n", e.workers)); err != nil {
		return fmt.Errorf("rie: release the init: %w", err)
	}
	return nil
}
