package queue

import (
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/carteiro/carteiro/services/internal/config"
)

// NewClient returns a Redis client for cfg with short timeouts, so a
// Redis outage turns into errors the callers retry, not hung goroutines.
// poolSize is the most connections kept; 0 means go-redis's default.
func NewClient(cfg config.Redis, poolSize int) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: cfg.Addr, Password: cfg.Password, DB: cfg.DB,
		DialTimeout: 2 * time.Second, ReadTimeout: 3 * time.Second, WriteTimeout: 3 * time.Second,
		PoolSize: poolSize,
	})
}
