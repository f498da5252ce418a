// Package browser tests the page as people meet it: a real headless
// Chromium, driven from Go with chromedp over the DevTools protocol, against
// the native stack (package stacktest: package devstack with nginx, api,
// worker and Mailpit on free ports, a fresh database and a private Redis).
//
// The tests fill and send the form and watch the status reach "enviada"
// and the mail reach Mailpit; check the inline pt-BR errors, the plain form
// post without JavaScript, that a double click sends one mail, that the
// page loads nothing from another host and logs no error or CSP violation;
// that it counts characters as the api does (250 emoji are sent, 251
// refused inline) and shows a failed delivery's kind, never the relay's
// reply;
// and check accessibility in the same browser: labels bound to the fields,
// errors announced, keyboard-only use, and WCAG AA colour contrast computed
// from the rendered styles.
//
// Screenshots go to artifacts/screenshots/ (ignored by git). With
// `go test ./services/browser -args -docs` the tests also refresh the
// README's pictures in docs/.
//
// Chromium is /usr/bin/chromium (or CHROMIUM, or chromium on PATH); when
// it is missing the tests are skipped, or fail with CI=true. It has tests
// only.
package browser
