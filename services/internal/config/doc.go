// Package config reads carteiro's settings from the environment, once, into
// plain structs with defaults, and reports every bad variable by name.
package config
