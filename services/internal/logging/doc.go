// Package logging builds the structured JSON logger every carteiro process
// writes to standard output.
package logging
