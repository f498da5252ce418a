package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/carteiro/carteiro/internal/devstack"
)

// The public HTTP ceiling of phase 2: the stack's own nginx configuration
// (nginx/*.template rendered by devstack, as make dev does) in front of a
// Go net/http handler that reads the body and answers 202 without doing
// anything, loaded by the same wrk command as the accept path at 16
// connections. What nginx, loopback HTTP and Go's server allow on this
// machine; carteiro's accept path is that plus decoding, validation and
// the commit.

// noopBody is the handler's answer, about the size of the api's.
const noopBody = `{"id":"00000000-0000-0000-0000-000000000000","status":"queued"}` + "\n"

// httpCeiling is the no-op handler and its nginx.
type httpCeiling struct {
	srv   *http.Server
	nginx *exec.Cmd
	// exited receives nginx's exit.
	exited chan error
	// addr is nginx's listener (host:port).
	addr string
}

// startHTTPCeiling starts the handler and an nginx rendered from cfg (the
// stack's configuration) with the handler as its only api upstream, both
// on free loopback ports, under dir.
func startHTTPCeiling(ctx context.Context, cfg devstack.Config, dir string, log io.Writer) (*httpCeiling, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &httpCeiling{srv: &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, noopBody)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}}
	go h.srv.Serve(ln)

	ports := &devstack.Ports{}
	defer ports.Close()
	listen, err := ports.Reserve()
	if err == nil {
		cfg.NginxStatusAddr, err = ports.Reserve()
	}
	if err != nil {
		h.stop()
		return nil, err
	}
	cfg.Dir = dir
	cfg.NginxListen = listen
	cfg.APIHTTPAddrs = []string{ln.Addr().String()}
	cfg.Nginx.AccessLog = filepath.Join(dir, "nginx", "access.log")
	cfg.Nginx.ErrorLog = filepath.Join(dir, "nginx", "error.log")
	n, err := cfg.NginxConfig()
	if err == nil {
		err = n.Render()
	}
	if err != nil {
		h.stop()
		return nil, fmt.Errorf("no-op nginx: %w", err)
	}
	ports.Close() // nginx binds them now
	h.addr = listen
	h.nginx = exec.Command(n.Bin, n.Args()...)
	h.nginx.Stdout, h.nginx.Stderr = log, log
	// Its own process group: a master that ignores SIGQUIT is killed
	// with its workers.
	h.nginx.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := h.nginx.Start(); err != nil {
		h.stop()
		return nil, fmt.Errorf("no-op nginx: %w", err)
	}
	h.exited = make(chan error, 1)
	go func() { h.exited <- h.nginx.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if answers(ctx, "http://"+listen+"/nginx-health") {
			return h, nil
		}
		select {
		case err := <-h.exited:
			h.nginx = nil
			h.stop()
			return nil, fmt.Errorf("no-op nginx exited: %v (its log: %s)", err, n.Vars["NGINX_ERROR_LOG"])
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			h.stop()
			return nil, errors.New("no-op nginx did not answer /nginx-health within 20 s")
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// url of the no-op api behind nginx.
// url is nginx's base URL (scheme and host): every path under /api
// reaches the handler.
func (h *httpCeiling) url() string { return "http://" + h.addr }

// stop ends nginx (SIGQUIT: graceful) and the handler.
func (h *httpCeiling) stop() {
	if h.nginx != nil {
		h.nginx.Process.Signal(syscall.SIGQUIT)
		select {
		case <-h.exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-h.nginx.Process.Pid, syscall.SIGKILL)
			<-h.exited
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h.srv.Shutdown(ctx)
}

// answers reports whether url answers 200.
func answers(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
