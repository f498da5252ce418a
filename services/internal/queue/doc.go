// Package queue carries message ids from the api to the workers on a Redis
// stream read by a consumer group. An entry holds the message id and the
// W3C trace context, never the message itself: Postgres is the source of
// truth, and the stream only says "this one is ready".
package queue
