// Command peakrss runs a command and reports its wall time and peak
// resident set size on its last line of standard error:
//
//	peakrss: wall_ns=123456 maxrss_kib=4567
//
// The benchmark runs `hostwall compile` through it because the peak RSS
// that wait4 reports for a child of a large process is wrong: Go starts
// children with vfork (CLONE_VM), so the child runs in its parent's
// address space until exec, and the kernel folds that space's high-water
// mark into the child's maxrss at exec. A child of this small process
// inherits only this process's few MiB.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: peakrss COMMAND [ARG...]")
		os.Exit(2)
	}
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	var rss int64
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			rss = ru.Maxrss
		}
	}
	fmt.Fprintf(os.Stderr, "peakrss: wall_ns=%d maxrss_kib=%d\n", wall.Nanoseconds(), rss)
	if err != nil {
		fmt.Fprintln(os.Stderr, "peakrss:", err)
		os.Exit(1)
	}
}
