package model

// safeSettings reads the [settings] keys of safe operations: on_error and
// failsafe_ssh_from (checked against the groups by checkFailsafe, once
// every file's groups are known).
func (l *loader) safeSettings(t *tbl) {
	if i := t.enum("on_error", "keep", "failsafe"); i >= 0 {
		l.p.Settings.OnError = []OnError{OnErrorKeep, OnErrorFailsafe}[i]
	}
	if s, ok := t.str("failsafe_ssh_from"); ok {
		if err := checkName(s); err != nil {
			l.errf(t.valPos("failsafe_ssh_from"), "\"failsafe_ssh_from\" must name a group of [groups]: %q %v", s, err)
			return
		}
		l.p.Settings.FailsafeSSHFrom = s
	}
}

// checkFailsafe reports a failsafe_ssh_from that names no group.
func (l *loader) checkFailsafe() {
	name := l.p.Settings.FailsafeSSHFrom
	if name == "" || l.p.Group(name) != nil {
		return
	}
	l.errf(l.p.Settings.Keys["failsafe_ssh_from"], "\"failsafe_ssh_from\" names undefined group %q%s", name, l.groupHint(name))
}
