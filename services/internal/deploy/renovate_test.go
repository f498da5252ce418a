package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// renovateConfig is the part of renovate.json the tests read.
type renovateConfig struct {
	CustomManagers []struct {
		CustomType          string
		ManagerFilePatterns []string
		MatchStrings        []string
		DatasourceTemplate  string
	}
	PackageRules []struct {
		MatchPackageNames []string
		GroupName         string
	}
}

func readRenovate(t *testing.T) renovateConfig {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "renovate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c renovateConfig
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("renovate.json: %v", err)
	}
	return c
}

// TestRenovateDotEnv: renovate.json's regex manager for .env matches every
// image line of .env, and what it captures is that line's image exactly:
// the repository (depName), the tag (currentValue) and the digest
// (currentDigest) when there is one. Renovate runs the regular expressions
// in JavaScript; Go's RE2 accepts the same (?<name>) syntax, and the
// expressions use nothing the two read differently.
func TestRenovateDotEnv(t *testing.T) {
	c := readRenovate(t)
	var matchers []*regexp.Regexp
	for _, m := range c.CustomManagers {
		handlesEnv := false
		for _, p := range m.ManagerFilePatterns {
			re, err := regexp.Compile(strings.Trim(p, "/"))
			if err != nil {
				t.Fatalf("managerFilePatterns %q: %v", p, err)
			}
			handlesEnv = handlesEnv || re.MatchString(".env")
		}
		if !handlesEnv {
			continue
		}
		if m.CustomType != "regex" || m.DatasourceTemplate != "docker" {
			t.Errorf(".env manager: got type %q datasource %q, want regex and docker", m.CustomType, m.DatasourceTemplate)
		}
		for _, s := range m.MatchStrings {
			re, err := regexp.Compile(s)
			if err != nil {
				t.Fatalf("matchStrings %q: %v", s, err)
			}
			matchers = append(matchers, re)
		}
	}
	if len(matchers) == 0 {
		t.Fatal("renovate.json: no custom manager handles .env")
	}

	b, err := os.ReadFile(filepath.Join(repoRoot(t), ".env"))
	if err != nil {
		t.Fatal(err)
	}
	content := string(b)
	// What renovate would extract, by the captured image.
	extracted := map[string]int{}
	for _, re := range matchers {
		for _, m := range re.FindAllStringSubmatch(content, -1) {
			get := func(name string) string {
				if i := re.SubexpIndex(name); i >= 0 {
					return m[i]
				}
				return ""
			}
			ref := get("depName") + ":" + get("currentValue")
			if d := get("currentDigest"); d != "" {
				ref += "@" + d
			}
			extracted[ref]++
		}
	}
	images := 0
	for k, v := range readDotEnv(t) {
		if !strings.HasSuffix(k, "_IMAGE") {
			continue
		}
		images++
		if extracted[v] != 1 {
			t.Errorf(".env %s=%s: renovate extracts it %d times, want exactly once (extracted: %v)", k, v, extracted[v], extracted)
		}
	}
	if images == 0 {
		t.Fatal(".env: no *_IMAGE line")
	}
	if len(extracted) > images {
		t.Errorf("renovate extracts %d images from .env, want %d (one per *_IMAGE line): %v", len(extracted), images, extracted)
	}
}

// TestRenovateNginxPair: NGINX_IMAGE and NGINX_OTEL_IMAGE are one package
// (nginx) in one group, so a bump moves both.
func TestRenovateNginxPair(t *testing.T) {
	env := readDotEnv(t)
	for _, k := range []string{"NGINX_IMAGE", "NGINX_OTEL_IMAGE"} {
		if repo, _, _ := strings.Cut(env[k], ":"); repo != "nginx" {
			t.Errorf(".env %s: got repository %q, want nginx", k, repo)
		}
	}
	for _, r := range readRenovate(t).PackageRules {
		for _, name := range r.MatchPackageNames {
			if name == "nginx" && r.GroupName != "" {
				return
			}
		}
	}
	t.Error("renovate.json: no package rule groups nginx")
}
