package model

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Pos is a position in a policy file: 1-based line and column (in bytes).
// The zero Pos means "no position" (e.g. a problem of the whole policy).
type Pos struct {
	File      string
	Line, Col int
}

// String returns "file:line:col", "file" or "-".
func (p Pos) String() string {
	switch {
	case p.File == "" && p.Line == 0:
		return "-"
	case p.Line == 0:
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Compare orders positions by file, line, column.
func (p Pos) Compare(q Pos) int {
	return cmp.Or(cmp.Compare(p.File, q.File), cmp.Compare(p.Line, q.Line), cmp.Compare(p.Col, q.Col))
}

// Severity says whether a Diag stops the policy from compiling.
type Severity uint8

const (
	// Error: the policy cannot be compiled.
	Error Severity = iota
	// Warning: the policy compiles, but likely not as meant.
	Warning
)

// String returns "error" or "warning".
func (s Severity) String() string {
	if s == Warning {
		return "warning"
	}
	return "error"
}

// Diag is one problem found in a policy.
type Diag struct {
	Pos      Pos
	Severity Severity
	// ID is a stable rule id for lint findings (e.g. "HW012"); empty for
	// model errors.
	ID  string
	Msg string
}

// String returns "file:line:col: msg" (with "warning: " before warnings;
// without the position when there is none).
func (d Diag) String() string {
	prefix := d.Pos.String() + ": "
	if d.Pos == (Pos{}) {
		prefix = "" // a problem of the whole policy or of the command line
	}
	if d.Severity == Warning {
		return prefix + "warning: " + d.Msg
	}
	return prefix + d.Msg
}

// Diags is a list of problems; Sort orders them by position.
type Diags []Diag

// Errorf adds an error at p.
func (d *Diags) Errorf(p Pos, format string, args ...any) {
	*d = append(*d, Diag{Pos: p, Severity: Error, Msg: fmt.Sprintf(format, args...)})
}

// Warnf adds a warning with a rule id at p.
func (d *Diags) Warnf(p Pos, id, format string, args ...any) {
	*d = append(*d, Diag{Pos: p, Severity: Warning, ID: id, Msg: fmt.Sprintf(format, args...)})
}

// Sort orders the diags by position, then message, and drops exact
// duplicates.
func (d *Diags) Sort() {
	slices.SortStableFunc(*d, func(a, b Diag) int {
		return cmp.Or(a.Pos.Compare(b.Pos), cmp.Compare(a.Severity, b.Severity), cmp.Compare(a.Msg, b.Msg))
	})
	*d = slices.Compact(*d)
}

// HasErrors reports whether any diag is an Error.
func (d Diags) HasErrors() bool {
	return slices.ContainsFunc(d, func(x Diag) bool { return x.Severity == Error })
}

// Err returns the errors as one error (nil when there is none); warnings are
// left out.
func (d Diags) Err() error {
	if !d.HasErrors() {
		return nil
	}
	var errs Diags
	for _, x := range d {
		if x.Severity == Error {
			errs = append(errs, x)
		}
	}
	return &DiagError{Diags: errs}
}

// DiagError is the error form of Diags; callers reach the list with
// errors.As.
type DiagError struct{ Diags Diags }

// Error returns one diag per line.
func (e *DiagError) Error() string {
	lines := make([]string, len(e.Diags))
	for i, d := range e.Diags {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// AsDiags returns the diags inside err, if it is (or wraps) a DiagError.
func AsDiags(err error) (Diags, bool) {
	var de *DiagError
	if errors.As(err, &de) {
		return de.Diags, true
	}
	return nil, false
}
