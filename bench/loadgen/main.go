// Command loadgen is a closed-loop load generator of the same shape for etcd
// 3.4 and Confman: N logical clients over M connections per endpoint, each
// client with exactly one request in flight, latency measured from just before
// the send to the reply. On stdout it prints "measure" as its window opens,
// "end" as it closes, and then one JSON object of results as its last line;
// diagnostics go to stderr. See README.md.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Exit codes: 0 after printing the result (even with errors), 2 on bad flags
// or when no endpoint can be reached.
const exitUsage = 2

// errUnreachable: the system could not be reached at all (exit 2).
var errUnreachable = errors.New("unreachable")

// retryDelay: how long a preload waits before writing a key again after a retryable error.
const retryDelay = 50 * time.Millisecond

// plan is the whole run: the flags, the key space and the schedule.
type plan struct {
	system        string
	op            string
	endpoints     []string
	clients       int
	conns         int
	keys          []string
	keyEndpoint   []int // per key: index into endpoints
	value         []byte
	writeFraction float64
	minVersion    string
	seed          int64
	preload       bool   // -op preload: every key written once, then stop
	samplesPath   string // -samples: where to write (reply wall-clock ns, latency ns) pairs

	start       time.Time // clients start sending
	windowStart time.Time // start + warmup: replies from here on count
	windowEnd   time.Time // windowStart + duration: no new requests from here on
	drainEnd    time.Time // windowEnd + drain: what is still in flight is unanswered
	window      time.Duration
	warmup      time.Duration
	drain       time.Duration
}

// schedule fixes the run's times, starting now.
func (p *plan) schedule() {
	p.start = time.Now()
	p.windowStart = p.start.Add(p.warmup)
	p.windowEnd = p.windowStart.Add(p.window)
	p.drainEnd = p.windowEnd.Add(p.drain)
}

// keyIndex: client c's k-th key (k from 0) is key (c + k*N) mod len(keys). In a
// preload there is no wrapping: ok is false once c + k*N is past the last key.
func (p *plan) keyIndex(c int, k int64) (idx int, ok bool) {
	i := int64(c) + k*int64(p.clients)
	if p.preload {
		return int(i), i < int64(len(p.keys))
	}
	return int(i % int64(len(p.keys))), true
}

func (p *plan) inWindow(t time.Time) bool {
	return !t.Before(p.windowStart) && t.Before(p.windowEnd)
}

// isWrite decides whether a client's next request is a put.
func (p *plan) isWrite(rng *splitmix64) bool {
	switch p.op {
	case "put", "preload":
		return true
	case "mix":
		return rng.float64() < p.writeFraction
	}
	return false
}

// splitmix64 is a tiny deterministic PRNG, one per logical client (8 bytes of
// state, so many clients cost nothing).
type splitmix64 struct{ state uint64 }

func newSplitmix64(seed int64, stream int) splitmix64 {
	r := splitmix64{state: uint64(seed)*0x9E3779B97F4A7C15 ^ uint64(stream)}
	r.next()
	return r
}

func (r *splitmix64) next() uint64 {
	r.state += 0x9E3779B97F4A7C15
	z := r.state
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// float64 is uniform in [0, 1).
func (r *splitmix64) float64() float64 {
	return float64(r.next()>>11) / (1 << 53)
}

// stats is what one goroutine measured; merged at the end.
type stats struct {
	readLat       []time.Duration // successful reads answered in the window
	writeLat      []time.Duration // successful writes answered in the window
	errors        int             // error replies (or failed calls) answered in the window
	codes         map[string]int
	firstMessage  map[string]string // per code, one message for stderr
	unanswered    int               // in flight when the drain ended
	outsideErrors int               // errors answered in the warm-up or the drain (not counted)
	stray         int               // replies that match no request in flight
	retries       int               // preload: writes sent again after a retryable error
	samples       []int64           // with -samples: (reply wall-clock ns, latency ns) per measured reply
}

func newStats() *stats {
	return &stats{codes: map[string]int{}, firstMessage: map[string]string{}}
}

// record accounts for one answered request.
func (s *stats) record(p *plan, received time.Time, latency time.Duration, write bool, code, message string) {
	s.note(code, message)
	if !p.inWindow(received) {
		if code != "" {
			s.outsideErrors++
		}
		return
	}
	switch {
	case code != "":
		s.errors++
		s.codes[code]++
	case write:
		s.writeLat = append(s.writeLat, latency)
	default:
		s.readLat = append(s.readLat, latency)
	}
	if code == "" && p.samplesPath != "" {
		s.samples = append(s.samples, received.UnixNano(), int64(latency))
	}
}

// note keeps the first message seen of each error code, for stderr.
func (s *stats) note(code, message string) {
	if code != "" && s.firstMessage[code] == "" {
		s.firstMessage[code] = message
		if message == "" {
			s.firstMessage[code] = "(no message)"
		}
	}
}

func (s *stats) merge(o *stats) {
	s.readLat = append(s.readLat, o.readLat...)
	s.writeLat = append(s.writeLat, o.writeLat...)
	s.errors += o.errors
	for k, v := range o.codes {
		s.codes[k] += v
	}
	for k, v := range o.firstMessage {
		if s.firstMessage[k] == "" {
			s.firstMessage[k] = v
		}
	}
	s.unanswered += o.unanswered
	s.outsideErrors += o.outsideErrors
	s.stray += o.stray
	s.retries += o.retries
	s.samples = append(s.samples, o.samples...)
}

// jsonFloat prints with at least one decimal (8.0, not 8), rounded to 3 decimals.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	v = math.Round(v*1000) / 1000
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return []byte(s), nil
}

type result struct {
	System     string         `json:"system"`
	Op         string         `json:"op"`
	Clients    int            `json:"clients"`
	Conns      int            `json:"conns"`
	WindowS    jsonFloat      `json:"window_s"`
	Ops        int            `json:"ops"`
	OpsPerS    jsonFloat      `json:"ops_per_s"`
	Reads      int            `json:"reads"`
	Writes     int            `json:"writes"`
	P50        jsonFloat      `json:"p50_ms"`
	P90        jsonFloat      `json:"p90_ms"`
	P99        jsonFloat      `json:"p99_ms"`
	P999       jsonFloat      `json:"p999_ms"`
	Max        jsonFloat      `json:"max_ms"`
	Mean       jsonFloat      `json:"mean_ms"`
	WriteP50   *jsonFloat     `json:"write_p50_ms,omitempty"`
	WriteP99   *jsonFloat     `json:"write_p99_ms,omitempty"`
	ReadP50    *jsonFloat     `json:"read_p50_ms,omitempty"`
	ReadP99    *jsonFloat     `json:"read_p99_ms,omitempty"`
	Errors     int            `json:"errors"`
	ErrorCodes map[string]int `json:"error_codes"`
	Unanswered int            `json:"unanswered"`
	CPUS       jsonFloat      `json:"generator_cpu_s"`
	CPUCores   jsonFloat      `json:"generator_cpu_cores"`
}

func sortDurations(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}

// percentileMs is the nearest-rank percentile (q in (0, 1]) of sorted latencies, in ms.
func percentileMs(sorted []time.Duration, q float64) jsonFloat {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	return ms(sorted[rank-1])
}

func ms(d time.Duration) jsonFloat {
	return jsonFloat(float64(d) / float64(time.Millisecond))
}

func buildResult(p *plan, s *stats, cpuS, windowS float64) result {
	all := make([]time.Duration, 0, len(s.readLat)+len(s.writeLat))
	all = append(all, s.readLat...)
	all = append(all, s.writeLat...)
	sortDurations(all)
	r := result{
		System:     p.system,
		Op:         p.op,
		Clients:    p.clients,
		Conns:      p.conns,
		WindowS:    jsonFloat(windowS),
		Ops:        len(all),
		OpsPerS:    jsonFloat(float64(len(all)) / windowS),
		Reads:      len(s.readLat),
		Writes:     len(s.writeLat),
		P50:        percentileMs(all, 0.50),
		P90:        percentileMs(all, 0.90),
		P99:        percentileMs(all, 0.99),
		P999:       percentileMs(all, 0.999),
		Errors:     s.errors,
		ErrorCodes: s.codes,
		Unanswered: s.unanswered,
		CPUS:       jsonFloat(cpuS),
		CPUCores:   jsonFloat(cpuS / windowS),
	}
	if len(all) > 0 {
		var sum time.Duration
		for _, d := range all {
			sum += d
		}
		r.Max = ms(all[len(all)-1])
		r.Mean = jsonFloat(float64(sum) / float64(len(all)) / float64(time.Millisecond))
	}
	if len(s.readLat) > 0 && len(s.writeLat) > 0 {
		sortDurations(s.readLat)
		sortDurations(s.writeLat)
		wp50, wp99 := percentileMs(s.writeLat, 0.50), percentileMs(s.writeLat, 0.99)
		rp50, rp99 := percentileMs(s.readLat, 0.50), percentileMs(s.readLat, 0.99)
		r.WriteP50, r.WriteP99, r.ReadP50, r.ReadP99 = &wp50, &wp99, &rp50, &rp99
	}
	return r
}

// cpuSeconds: this process's user + system CPU so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// windowSample is what watchWindow measured.
type windowSample struct {
	cpuS    float64 // this process's CPU seconds in the window
	windowS float64 // the window's length
}

// watchWindow samples the CPU as the window opens and as it closes, and says
// so on stdout (the lines "measure" and "end", so that a caller can sample the
// servers at the same moments). The window closes at windowEnd, or for a
// preload as soon as finished is closed (nil: never). The result is sent once
// the window has closed.
func watchWindow(p *plan, finished <-chan struct{}) <-chan windowSample {
	out := make(chan windowSample, 1)
	go func() {
		time.Sleep(time.Until(p.windowStart))
		before := cpuSeconds()
		fmt.Println("measure")
		timer := time.NewTimer(time.Until(p.windowEnd))
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-finished:
		}
		cpu := cpuSeconds() - before
		windowS := p.window.Seconds()
		if p.preload {
			windowS = time.Since(p.windowStart).Seconds()
		}
		fmt.Println("end")
		out <- windowSample{cpuS: cpu, windowS: windowS}
	}()
	return out
}

// writeSamples writes the (reply wall-clock ns, latency ns) pairs in order of
// reply, as little-endian int64s.
func writeSamples(path string, pairs []int64) error {
	n := len(pairs) / 2
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return pairs[2*order[a]] < pairs[2*order[b]] })
	buf := make([]byte, 0, 16*n)
	for _, i := range order {
		buf = binary.LittleEndian.AppendUint64(buf, uint64(pairs[2*i]))
		buf = binary.LittleEndian.AppendUint64(buf, uint64(pairs[2*i+1]))
	}
	return os.WriteFile(path, buf, 0o644)
}

// readKeys reads "<key>\t<endpoint index>" lines.
func readKeys(path string, endpoints int) ([]string, []int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var keys []string
	var eps []int
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" {
			continue
		}
		key, idx, found := strings.Cut(text, "\t")
		if !found || key == "" {
			return nil, nil, fmt.Errorf("%s:%d: want \"<key>\\t<endpoint index>\"", path, line)
		}
		i, err := strconv.Atoi(strings.TrimSpace(idx))
		if err != nil || i < 0 || i >= endpoints {
			return nil, nil, fmt.Errorf("%s:%d: endpoint index %q is not in 0..%d", path, line, idx, endpoints-1)
		}
		keys = append(keys, key)
		eps = append(eps, i)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %v", path, err)
	}
	if len(keys) == 0 {
		return nil, nil, fmt.Errorf("%s: no keys", path)
	}
	return keys, eps, nil
}

func usageError(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	os.Exit(exitUsage)
}

func logf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
}

func main() {
	system := flag.String("system", "", "etcd or confman")
	endpointsFlag := flag.String("endpoints", "", "comma-separated: etcd host:port, confman tcp://host:port")
	op := flag.String("op", "", "put, get, serializable, stale, version, mix or preload")
	clients := flag.Int("clients", 256, "logical clients, each with one request in flight")
	conns := flag.Int("conns", 4, "connections per endpoint")
	keysFile := flag.String("keys-file", "", "one line per key: \"<key>\\t<endpoint index>\" (required)")
	valueBytes := flag.Int("value-bytes", 100, "value size of puts (random bytes, fixed per run)")
	writeFraction := flag.Float64("write-fraction", 0.1, "for -op mix: the fraction of puts (the rest are linearizable gets)")
	minVersion := flag.String("min-version", "", "confman, -op version: the min_version token sent")
	warmup := flag.Float64("warmup", 2, "seconds run but not measured")
	duration := flag.Float64("duration", 8, "measured seconds")
	drain := flag.Float64("drain", 5, "seconds to wait for in-flight replies after the window")
	seed := flag.Int64("seed", 1, "seed of the value and of the mix")
	samplesPath := flag.String("samples", "", "write every measured reply's (wall-clock ns, latency ns) here")
	flag.Parse()

	if flag.NArg() > 0 {
		usageError("unexpected arguments: %q", flag.Args())
	}
	if *system != "etcd" && *system != "confman" {
		usageError("-system must be etcd or confman (got %q)", *system)
	}
	switch *op {
	case "put", "get", "serializable", "stale", "version", "mix", "preload":
	default:
		usageError("-op must be put, get, serializable, stale, version, mix or preload (got %q)", *op)
	}
	var endpoints []string
	for _, e := range strings.Split(*endpointsFlag, ",") {
		if e = strings.TrimSpace(e); e != "" {
			endpoints = append(endpoints, e)
		}
	}
	if len(endpoints) == 0 {
		usageError("-endpoints is required")
	}
	if *system == "confman" {
		for _, e := range endpoints {
			if !strings.Contains(e, "://") {
				usageError("confman endpoint %q needs a scheme (tcp://host:port)", e)
			}
		}
	}
	if *clients < 1 || *conns < 1 {
		usageError("-clients and -conns must be at least 1")
	}
	if *valueBytes < 0 {
		usageError("-value-bytes must be at least 0")
	}
	if *writeFraction < 0 || *writeFraction > 1 || math.IsNaN(*writeFraction) {
		usageError("-write-fraction must be in [0, 1]")
	}
	if *warmup < 0 || *duration <= 0 || *drain < 0 || math.IsNaN(*warmup+*duration+*drain) {
		usageError("-warmup and -drain must be >= 0 and -duration > 0")
	}
	if *keysFile == "" {
		usageError("-keys-file is required")
	}
	if *system == "confman" && *op == "version" && *minVersion == "" {
		usageError("-op version needs -min-version for confman")
	}
	keys, keyEndpoint, err := readKeys(*keysFile, len(endpoints))
	if err != nil {
		usageError("%v", err)
	}
	if *op == "preload" {
		if *warmup != 0 && flagSet("warmup") {
			logf("note: a preload has no warm-up: -warmup is ignored")
		}
		*warmup = 0
	}
	if len(keys) < *clients && *op != "preload" {
		logf("note: %d keys for %d clients: some concurrent clients share keys", len(keys), *clients)
	}

	value := make([]byte, *valueBytes)
	rand.New(rand.NewSource(*seed)).Read(value)
	p := &plan{
		system:        *system,
		op:            *op,
		endpoints:     endpoints,
		clients:       *clients,
		conns:         *conns,
		keys:          keys,
		keyEndpoint:   keyEndpoint,
		value:         value,
		writeFraction: *writeFraction,
		minVersion:    *minVersion,
		seed:          *seed,
		preload:       *op == "preload",
		samplesPath:   *samplesPath,
		warmup:        seconds(*warmup),
		window:        seconds(*duration),
		drain:         seconds(*drain),
	}
	logf("%s %s: %d clients, %d conns per endpoint x %d endpoints, %d keys, warmup %.1fs, window %.1fs",
		p.system, p.op, p.clients, p.conns, len(endpoints), len(keys), *warmup, *duration)

	var s *stats
	var w windowSample
	if p.system == "etcd" {
		s, w, err = runEtcd(p)
	} else {
		s, w, err = runConfman(p)
	}
	if err != nil {
		logf("%v", err)
		os.Exit(exitUsage)
	}
	report(p, s)
	if p.samplesPath != "" {
		if err := writeSamples(p.samplesPath, s.samples); err != nil {
			logf("writing the samples: %v", err)
			os.Exit(1)
		}
	}
	out, err := json.Marshal(buildResult(p, s, w.cpuS, w.windowS))
	if err != nil {
		logf("encoding the result: %v", err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}

// flagSet: the flag was given on the command line.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second))
}

// report writes the diagnostics of a run to stderr.
func report(p *plan, s *stats) {
	codes := make([]string, 0, len(s.firstMessage))
	for c := range s.firstMessage {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		logf("error %s (%d in the window), e.g.: %s", c, s.codes[c], s.firstMessage[c])
	}
	if s.outsideErrors > 0 {
		logf("%d errors in the warm-up or the drain (not counted)", s.outsideErrors)
	}
	if s.stray > 0 {
		logf("%d replies matched no request in flight (ignored)", s.stray)
	}
	if s.retries > 0 {
		logf("%d writes sent again after a retryable error", s.retries)
	}
	if s.unanswered > 0 {
		logf("%d requests unanswered after the %.1fs drain", s.unanswered, p.drain.Seconds())
	}
}
