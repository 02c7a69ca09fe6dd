package rie

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Pids returns the IDs of the live processes the emulator started whose
// program name (the base of argv[0]) is name, such as the extension
// "circuit-breaker" or the function's binary. Only descendants of the
// emulator are considered (it starts them in process groups of their own).
func (e *Emulator) Pids(name string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("rie: list processes: %w", err)
	}
	parents := map[int]int{}
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(pid); ok {
			parents[pid] = ppid
		}
	}
	root := e.cmd.Process.Pid
	descends := func(pid int) bool {
		for i := 0; i < 64 && pid > 1; i++ { // bounded walk up the tree
			if pid = parents[pid]; pid == root {
				return true
			}
		}
		return false
	}
	var pids []int
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || !descends(pid) || isZombie(pid) {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		argv0, _, _ := bytes.Cut(cmdline, []byte{0})
		if filepath.Base(string(argv0)) == name {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// parentOf returns the parent process ID of pid.
func parentOf(pid int) (int, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(fields[1])
	return ppid, err == nil
}

// isZombie reports whether pid has exited but was not reaped yet.
func isZombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X'
}

// Signal sends sig to every process named name (see Pids) and returns
// how many it signalled; none is an error. It does not wait.
func (e *Emulator) Signal(name string, sig syscall.Signal) (int, error) {
	pids, err := e.Pids(name)
	if err != nil {
		return 0, err
	}
	if len(pids) == 0 {
		return 0, fmt.Errorf("rie: no process named %q", name)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil {
			return 0, fmt.Errorf("rie: signal %s (%d): %w", name, pid, err)
		}
	}
	return len(pids), nil
}

// Kill sends SIGKILL to every process named name (see Pids) and waits up
// to 5 s until they are gone. It returns how many it killed; none is an
// error.
func (e *Emulator) Kill(name string) (int, error) {
	n, err := e.Signal(name, syscall.SIGKILL)
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		left, err := e.Pids(name)
		if err != nil {
			return 0, err
		}
		if len(left) == 0 {
			return n, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("rie: %s still running 5s after SIGKILL: %v", name, left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
