package main

// report is what probe prints; deploy/composetest decodes the same shape
// (ProbeReport there).
type report struct {
	Dials      []dial  `json:"dials"`
	Reads      []read  `json:"reads,omitempty"`
	Routes     []route `json:"routes"`
	Interfaces []iface `json:"interfaces"`
}

// dial is the outcome of one TCP connection attempt.
type dial struct {
	Target string `json:"target"` // HOST:PORT as given
	OK     bool   `json:"ok"`     // the connection was established
	Error  string `json:"error,omitempty"`
}

// route is one line of /proc/net/route, addresses in dotted form.
type route struct {
	Iface       string `json:"iface"`
	Destination string `json:"destination"`
	Gateway     string `json:"gateway"`
	Mask        string `json:"mask"`
}

// iface is a network interface and its addresses in CIDR form.
type iface struct {
	Name  string   `json:"name"`
	Addrs []string `json:"addrs"`
}

// read is the outcome of reading one file: its size, never its content.
type read struct {
	Path  string `json:"path"`
	OK    bool   `json:"ok"`
	Bytes int    `json:"bytes"`
	Error string `json:"error,omitempty"`
}
