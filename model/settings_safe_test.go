package model

import "testing"

func TestSafeSettings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		src     string
		onError OnError
		from    string
	}{
		{"defaults", "", OnErrorKeep, ""},
		{"keep", "[settings]\non_error = \"keep\"\n", OnErrorKeep, ""},
		{"failsafe anywhere", "[settings]\non_error = \"failsafe\"\n", OnErrorFailsafe, ""},
		{"failsafe from group of a later file", "[settings]\non_error = \"failsafe\"\nfailsafe_ssh_from = \"admins\"\n", OnErrorFailsafe, "admins"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, d := LoadSources([]Source{
				{Name: "a.toml", Data: []byte(tc.src)},
				{Name: "b.toml", Data: []byte("[groups]\nadmins = [\"198.18.5.0/24\"]\n")},
			})
			if d.HasErrors() {
				t.Fatalf("errors: %v", d)
			}
			if p.Settings.OnError != tc.onError || p.Settings.FailsafeSSHFrom != tc.from {
				t.Errorf("got on_error %d, failsafe_ssh_from %q; want %d, %q", p.Settings.OnError, p.Settings.FailsafeSSHFrom, tc.onError, tc.from)
			}
		})
	}
}
