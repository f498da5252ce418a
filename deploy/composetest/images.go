package composetest

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Image labels: what the harness built, so that nothing else is mistaken for
// it.
const (
	labelBuiltBy = "org.carteiro.composetest"
	labelKey     = "org.carteiro.composetest.key"
)

// BaseImage describes the Debian image the stand-ins are built on:
// `debootstrap --variant=minbase Suite` from Mirror, imported with `docker
// import`.
type BaseImage struct {
	Suite  string // e.g. bookworm
	Mirror string // e.g. http://deb.debian.org/debian
}

// baseRecipe changes whenever EnsureBase makes the image differently, so
// that a new recipe gets a new tag.
const baseRecipe = "base-v1"

// Ref is the base image's tag, keyed on the recipe, suite and mirror.
func (b BaseImage) Ref() string {
	return "carteiro-standin/debian:" + b.Suite + "-" + shortHash(baseRecipe, b.Suite, b.Mirror)
}

// EnsureBase builds the base image unless its tag exists and returns its
// tag and whether it was built. It needs root (debootstrap) and Debian's
// mirror.
func (e *Engine) EnsureBase(ctx context.Context, b BaseImage) (ref string, built bool, err error) {
	ref = b.Ref()
	if id, err := e.ImageID(ctx, ref); err != nil || id != "" {
		return ref, false, err
	}
	if missing := BaseNeeds(os.Geteuid(), exec.LookPath); len(missing) > 0 {
		return "", false, fmt.Errorf("base image %s is missing and building it needs %s", ref, strings.Join(missing, " and "))
	}
	dir, err := os.MkdirTemp("", "carteiro-rootfs-")
	if err != nil {
		return "", false, err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "rootfs")
	boot := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", b.Suite, root, b.Mirror)
	if out, err := boot.CombinedOutput(); err != nil {
		return "", false, fmt.Errorf("debootstrap %s: %v: %s", b.Suite, err, tail(string(out), 30))
	}
	// Security and point-release updates too, as the official Debian
	// images have; no recommended packages; no package cache in the image.
	sources := fmt.Sprintf("deb %[1]s %[2]s main\ndeb %[1]s %[2]s-updates main\ndeb %[3]s %[2]s-security main\n",
		b.Mirror, b.Suite, strings.TrimSuffix(b.Mirror, "/debian")+"/debian-security")
	if err := os.WriteFile(filepath.Join(root, "etc/apt/sources.list"), []byte(sources), 0o644); err != nil {
		return "", false, err
	}
	aptConf := "APT::Install-Recommends \"false\";\nAPT::Install-Suggests \"false\";\n"
	if err := os.WriteFile(filepath.Join(root, "etc/apt/apt.conf.d/90carteiro-standin"), []byte(aptConf), 0o644); err != nil {
		return "", false, err
	}
	for _, d := range []string{"var/cache/apt/archives", "var/lib/apt/lists"} {
		entries, _ := filepath.Glob(filepath.Join(root, d, "*"))
		for _, p := range entries {
			if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
				os.Remove(p)
			}
		}
	}
	tarCmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "-C", root, "-c", ".")
	stream, err := tarCmd.StdoutPipe()
	if err != nil {
		return "", false, err
	}
	if err := tarCmd.Start(); err != nil {
		return "", false, err
	}
	_, importErr := e.RunInput(ctx, stream, "image", "import",
		"--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"--change", `CMD ["bash"]`,
		"--change", "LABEL "+labelBuiltBy+"=base",
		"-", ref)
	tarErr := tarCmd.Wait()
	if importErr != nil {
		return "", false, importErr
	}
	if tarErr != nil {
		return "", false, fmt.Errorf("tar of %s: %w", root, tarErr)
	}
	return ref, true, nil
}

// BaseNeeds names what EnsureBase needs to build the base image and this
// machine lacks, given the effective user ID and a PATH lookup
// (exec.LookPath): root, and debootstrap on PATH. Empty when it has both.
func BaseNeeds(euid int, lookPath func(string) (string, error)) []string {
	var missing []string
	if euid != 0 {
		missing = append(missing, "root (debootstrap makes the root file system as root: build the base alone with "+
			"`sudo bin/standinenv -base`, then go on as yourself; make test-compose runs as root)")
	}
	if _, err := lookPath("debootstrap"); err != nil {
		missing = append(missing, "debootstrap on PATH (apt-get install debootstrap)")
	}
	return missing
}

// BuildSpec is one image built from a context assembled from anywhere on
// the machine.
type BuildSpec struct {
	// Repo is the image repository; the tag is a hash of the inputs.
	Repo string
	// Dir holds the Dockerfile; all its files are in the context.
	Dir string
	// Extra adds files or folders to the context: name in the context →
	// path on this machine.
	Extra map[string]string
	// Args are the build arguments (BASE_IMAGE and so on).
	Args map[string]string
	// Inputs are more parts of the key that are not in the context, such
	// as the ID of the image that BASE_IMAGE names.
	Inputs []string
}

// Build builds spec unless an image with the same inputs exists, and returns
// its reference and whether it was built. The build log is returned in the
// error when the build fails.
func (e *Engine) Build(ctx context.Context, spec BuildSpec) (ref string, built bool, err error) {
	h := sha256.New()
	fmt.Fprintf(h, "build-v1\n%s\n", spec.Repo)
	for _, k := range sortedKeys(spec.Args) {
		fmt.Fprintf(h, "arg %s=%s\n", k, spec.Args[k])
	}
	for _, in := range spec.Inputs {
		fmt.Fprintf(h, "input %s\n", in)
	}
	if err := writeContext(h, spec); err != nil {
		return "", false, err
	}
	key := hex.EncodeToString(h.Sum(nil))
	ref = spec.Repo + ":" + key[:16]
	if id, err := e.ImageID(ctx, ref); err != nil || id != "" {
		return ref, false, err
	}
	args := []string{"buildx", "build", "--progress=plain", "--tag", ref,
		"--label", labelBuiltBy + "=image", "--label", labelKey + "=" + key}
	for _, k := range sortedKeys(spec.Args) {
		args = append(args, "--build-arg", k+"="+spec.Args[k])
	}
	args = append(args, "-")
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeContext(pw, spec)) }()
	_, err = e.RunInput(ctx, pr, args...)
	pr.Close()
	if err != nil {
		return "", false, fmt.Errorf("build %s from %s: %w", ref, spec.Dir, err)
	}
	return ref, true, nil
}

// contextTime is every file's modification time in a build context, so the
// same files always make the same archive.
var contextTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// writeContext writes spec's build context to w as a tar archive: Dir's
// files at the root, then each Extra entry under its name, in a fixed order
// with fixed owners and times.
func writeContext(w io.Writer, spec BuildSpec) error {
	tw := tar.NewWriter(w)
	if err := addTree(tw, spec.Dir, ""); err != nil {
		return err
	}
	for _, name := range sortedKeys(spec.Extra) {
		src, err := filepath.EvalSymlinks(spec.Extra[name])
		if err != nil {
			return err
		}
		if err := addTree(tw, src, name); err != nil {
			return err
		}
	}
	return tw.Close()
}

// addTree adds src (a file or a folder, walked in lexical order) to tw
// under the name prefix ("" puts a folder's contents at the root).
func addTree(tw *tar.Writer, src, prefix string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(filepath.Join(prefix, rel))
		if name == "." || name == "" {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = name
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = contextTime, time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		hdr.PAXRecords = nil
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
}

// shortHash is 16 hex digits of the SHA-256 of parts.
func shortHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
