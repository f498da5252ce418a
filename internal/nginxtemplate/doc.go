// Package nginxtemplate renders nginx configuration templates the way the
// official nginx container image does before it starts nginx, so that one
// set of templates (nginx/ in this repository) gives the same configuration
// in compose and natively (`make dev`, package devstack).
//
// The rules are those of the image's entrypoint script
// /docker-entrypoint.d/20-envsubst-on-templates.sh (repository
// nginxinc/docker-nginx, file entrypoint/20-envsubst-on-templates.sh):
//
//   - every regular file under NGINX_ENVSUBST_TEMPLATE_DIR (default
//     /etc/nginx/templates; symbolic links followed, as `find -follow` does)
//     whose name ends in NGINX_ENVSUBST_TEMPLATE_SUFFIX (default .template)
//     is rendered to the same relative path under NGINX_ENVSUBST_OUTPUT_DIR
//     (default /etc/nginx/conf.d), without the suffix; subfolders are
//     created as needed;
//   - a missing template folder renders nothing and is not an error; an
//     output folder that does not exist or is not writable is an error
//     (the script logs it and nginx then starts without the files);
//   - the text is passed through gettext's envsubst with a SHELL-FORMAT
//     that lists every variable DEFINED in the environment whose name
//     matches the regular expression NGINX_ENVSUBST_FILTER (unanchored, as
//     awk's `name ~ /filter/`; empty matches every name). Both $NAME and
//     ${NAME} are replaced by the value (an empty value gives an empty
//     string); a variable that is not defined, or does not match the filter,
//     is left as written, and so are forms envsubst does not know
//     (${NAME:-default}, ${NAME with no closing brace, $1). A name is
//     [A-Za-z_][A-Za-z0-9_]*, and $NAME takes the longest such run.
//
// Not kept from the image: the .stream-template files (rendered into
// NGINX_ENVSUBST_STREAM_OUTPUT_DIR with a stream block appended to
// /etc/nginx/nginx.conf) and the entrypoint's other scripts (IPv6 listen,
// local resolvers, worker tuning); carteiro uses none of them.
//
// The package uses the standard library only, so cmd/nginx-entrypoint
// builds as a static binary (CGO_ENABLED=0) for a stand-in of the official
// image.
package nginxtemplate
