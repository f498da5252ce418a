// Command nginx-entrypoint is the entrypoint of a stand-in for the official
// nginx container image: when its first argument is nginx or nginx-debug it
// renders /etc/nginx/templates into /etc/nginx/conf.d (or wherever the
// NGINX_ENVSUBST_* variables say) exactly as the image's
// /docker-entrypoint.d/20-envsubst-on-templates.sh does, then it replaces
// itself with its arguments (execve), as the image's docker-entrypoint.sh
// does with `exec "$@"`. Any other command is executed without rendering.
//
//	ENTRYPOINT ["/nginx-entrypoint"]
//	CMD ["nginx", "-g", "daemon off;"]
//
// The rendering rules, and what of the image is not kept, are in package
// internal/nginxtemplate; the same package renders the native stack's
// configuration (`make dev`). Log lines go to stdout with the image's
// wording, and NGINX_ENTRYPOINT_QUIET_LOGS (any value) silences them. As in
// the image, an output folder that is not writable is logged as an ERROR and
// the command still runs (nginx then reports the missing configuration).
//
// It uses the standard library only: build it with CGO_ENABLED=0 for a
// static binary that runs in any image.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/carteiro/carteiro/internal/nginxtemplate"
)

func main() {
	if err := run(os.Args, os.Environ(), os.Stdout, syscall.Exec); err != nil {
		fmt.Fprintln(os.Stderr, "nginx-entrypoint:", err)
		os.Exit(1)
	}
}

// execFunc replaces the process with argv[0] (syscall.Exec); it returns
// only on failure.
type execFunc func(path string, argv []string, envv []string) error

// run renders the templates when args[1] is nginx or nginx-debug, then
// executes args[1:].
func run(args, environ []string, stdout io.Writer, exec execFunc) error {
	if len(args) < 2 {
		return errors.New("usage: nginx-entrypoint COMMAND [ARG...]")
	}
	getenv := func(name string) string {
		for _, kv := range environ {
			if len(kv) > len(name) && kv[:len(name)] == name && kv[len(name)] == '=' {
				return kv[len(name)+1:]
			}
		}
		return ""
	}
	logf := func(format string, a ...any) {
		if getenv("NGINX_ENTRYPOINT_QUIET_LOGS") == "" {
			fmt.Fprintf(stdout, format+"\n", a...)
		}
	}
	if cmd := args[1]; cmd == "nginx" || cmd == "nginx-debug" {
		const me = "20-envsubst-on-templates.sh"
		files, err := nginxtemplate.Render(nginxtemplate.OptionsFromEnv(getenv), environ)
		for _, f := range files {
			logf("%s: Running envsubst on %s to %s", me, f.Template, f.Output)
		}
		switch {
		case errors.Is(err, nginxtemplate.ErrOutputNotWritable):
			logf("%s: ERROR: %v", me, err)
		case err != nil:
			return err
		}
		logf("%s: Configuration complete; ready for start up", args[0])
	}
	path, err := lookPath(args[1], getenv("PATH"))
	if err != nil {
		return err
	}
	return exec(path, args[1:], environ)
}

// lookPath finds file in path (the PATH of the environment given), as a
// shell's exec would: a name with a slash is used as it is, otherwise the
// first executable regular file of that name in path's folders.
func lookPath(file, path string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in PATH %s", file, path)
}
