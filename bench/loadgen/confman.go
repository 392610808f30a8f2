package main

import (
	"bytes"
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// pollInterval bounds a group's wait in zmq_poll, so it notices the end of the run.
const pollInterval = 50 * time.Millisecond

// cmClient is one logical client of a group.
type cmClient struct {
	c        int   // client number
	k        int64 // keys taken so far (the next key is keyIndex(c, k))
	r        int64 // requests sent so far, retries included (ids use it)
	seq      int64 // the session's last put seq
	idx      int   // the key of the last request
	inflight bool
	id       int64 // the request in flight
	write    bool
	sent     time.Time
	retryAt  time.Time // a preload write waiting to be sent again (zero: none)
	rng      splitmix64
	clientID []byte // 8 random bytes of the run + c as 8 big-endian bytes
}

// cmGroup is one goroutine: one DEALER per endpoint and the clients c with c % M == g.
type cmGroup struct {
	p        *plan
	g        int
	sockets  []*zmqSocket // per endpoint
	poller   *zmqPoller
	clients  []*cmClient // clients[i] is client g + i*M
	inflight int         // clients with a request in flight
	waiting  int         // clients waiting to send a preload write again
	st       *stats
	answered bool
	logged   int // stray replies logged so far (stderr stays short)

	buf bytes.Buffer
	enc *msgpack.Encoder
	rd  bytes.Reader
	dec *msgpack.Decoder
}

// runConfman: M groups (goroutines), each owning one DEALER socket per
// endpoint, so M connections per endpoint in all.
func runConfman(p *plan) (*stats, windowSample, error) {
	if p.op == "serializable" {
		logf("note: confman has no serializable mode; -op serializable sends stale gets")
	}
	// One I/O thread (ZeroMQ's default) carries every connection: more only add
	// thread wake-ups per reply on a small machine.
	ctx, err := newZmqContext(1)
	if err != nil {
		return nil, windowSample{}, err
	}
	defer ctx.term()

	// A fresh session prefix per run: a reused client_id would replay old seqs' results.
	prefix := make([]byte, 8)
	if _, err := crand.Read(prefix); err != nil {
		return nil, windowSample{}, fmt.Errorf("random client_id prefix: %v", err)
	}

	var anyReply, abort atomic.Bool
	p.schedule()
	done := make(chan struct{}) // closed when every group has returned
	var finished <-chan struct{}
	if p.preload {
		finished = done
	}
	window := watchWindow(p, finished)

	groups := p.conns
	if groups > p.clients {
		groups = p.clients // a group without clients would only hold idle sockets
	}
	all := make([]*stats, groups)
	errs := make([]error, groups)
	var wg sync.WaitGroup
	for g := 0; g < groups; g++ {
		all[g] = newStats()
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			errs[g] = runGroup(p, ctx, g, prefix, all[g], &anyReply, &abort)
			if errs[g] != nil {
				abort.Store(true) // the run is lost: stop the other groups too
			}
		}(g)
	}
	go func() { wg.Wait(); close(done) }()

	// No reply at all by the window's end: nothing is reachable.
	unreachable := false
	timer := time.NewTimer(time.Until(p.windowEnd))
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		if !anyReply.Load() {
			unreachable = true
			abort.Store(true)
		}
		<-done
	}
	for _, err := range errs {
		if err != nil {
			return nil, windowSample{}, err
		}
	}
	if unreachable {
		return nil, windowSample{}, fmt.Errorf("%w: no confman endpoint answered within the warm-up and the window (%.1fs): %v",
			errUnreachable, p.windowEnd.Sub(p.start).Seconds(), p.endpoints)
	}
	w := <-window
	total := newStats()
	for _, st := range all {
		total.merge(st)
	}
	return total, w, nil
}

// runGroup is one group's closed loop; it owns its sockets from creation to close.
func runGroup(p *plan, ctx *zmqContext, g int, prefix []byte, st *stats, anyReply, abort *atomic.Bool) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	gr := &cmGroup{p: p, g: g, st: st}
	gr.enc = msgpack.NewEncoder(&gr.buf)
	gr.dec = msgpack.NewDecoder(&gr.rd)
	defer func() {
		if gr.poller != nil {
			gr.poller.free()
		}
		for _, s := range gr.sockets {
			s.close()
		}
	}()
	for _, ep := range p.endpoints {
		s, err := ctx.dealer()
		if err != nil {
			return err
		}
		gr.sockets = append(gr.sockets, s)
		// The closed loop bounds what is queued; never block a send on the high-water mark.
		if err := s.unlimitedHWM(); err != nil {
			return err
		}
		if err := s.connect(ep); err != nil {
			return err
		}
	}
	gr.poller = newZmqPoller(gr.sockets)

	for c := g; c < p.clients; c += p.conns {
		id := make([]byte, 16)
		copy(id, prefix)
		binary.BigEndian.PutUint64(id[8:], uint64(c))
		gr.clients = append(gr.clients, &cmClient{c: c, rng: newSplitmix64(p.seed, c), clientID: id})
	}
	for _, cl := range gr.clients {
		if err := gr.sendNext(cl); err != nil {
			return err
		}
	}

	for (gr.inflight > 0 || gr.waiting > 0) && !abort.Load() {
		now := time.Now()
		deadline := p.windowEnd
		if !now.Before(p.windowEnd) {
			deadline = p.drainEnd
			if !now.Before(p.drainEnd) {
				break
			}
		}
		if gr.waiting > 0 {
			next, err := gr.sendRetries(now)
			if err != nil {
				return err
			}
			if gr.waiting > 0 && next.Before(deadline) {
				deadline = next
			}
		}
		wait := deadline.Sub(now)
		if wait > pollInterval {
			wait = pollInterval
		}
		n, err := gr.poller.poll(wait)
		if err != nil {
			return err
		}
		if n == 0 {
			continue
		}
		for i, s := range gr.sockets {
			if !gr.poller.readable(i) {
				continue
			}
			if err := gr.receiveAll(s, anyReply, abort); err != nil {
				return err
			}
		}
	}
	st.unanswered += gr.inflight
	return nil
}

// receiveAll handles every reply waiting on s, sending each answered client's next request.
func (gr *cmGroup) receiveAll(s *zmqSocket, anyReply, abort *atomic.Bool) error {
	p := gr.p
	for {
		frame, err := s.recv(false)
		if err == errAgain {
			return nil
		}
		if err != nil {
			return err
		}
		received := time.Now()
		if !gr.answered {
			gr.answered = true
			anyReply.Store(true)
		}
		rep, err := gr.decodeReply(frame)
		if err != nil {
			gr.stray("undecodable reply (%v): %q", err, frame)
			continue
		}
		cl := gr.clientOf(rep.id)
		if cl == nil {
			gr.stray("reply id %d matches no request in flight: ok %v %s %s", rep.id, rep.ok, rep.code, rep.message)
			continue
		}
		cl.inflight = false
		gr.inflight--
		if !rep.ok && rep.code == "" {
			rep.code = "UNKNOWN"
		}
		if p.preload && !rep.ok && rep.retryable && received.Add(retryDelay).Before(p.windowEnd) {
			// The key must be written: send the same write again (same seq) in a moment.
			gr.st.retries++
			gr.st.note(rep.code, rep.message)
			cl.retryAt = received.Add(retryDelay)
			gr.waiting++
			continue
		}
		gr.st.record(p, received, received.Sub(cl.sent), cl.write, rep.code, rep.message)
		if received.Before(p.windowEnd) && !abort.Load() {
			if err := gr.sendNext(cl); err != nil {
				return err
			}
		}
	}
}

// stray counts a reply that answers nothing in flight; the first few are logged.
func (gr *cmGroup) stray(format string, args ...interface{}) {
	gr.st.stray++
	if gr.logged < 5 {
		gr.logged++
		logf("group %d: "+format, append([]interface{}{gr.g}, args...)...)
	}
}

// sendRetries sends the preload writes whose retry time has come; next is the
// earliest retry time still ahead (meaningful while gr.waiting > 0).
func (gr *cmGroup) sendRetries(now time.Time) (next time.Time, err error) {
	for _, cl := range gr.clients {
		if cl.retryAt.IsZero() {
			continue
		}
		if cl.retryAt.After(now) {
			if next.IsZero() || cl.retryAt.Before(next) {
				next = cl.retryAt
			}
			continue
		}
		cl.retryAt = time.Time{}
		gr.waiting--
		if err := gr.send(cl); err != nil {
			return next, err
		}
	}
	return next, nil
}

// Request ids: the r-th request of client c has id r*N + c, unique in the run,
// so a reply's id names its client.
func (gr *cmGroup) clientOf(id int64) *cmClient {
	n := int64(gr.p.clients)
	if id < 0 {
		return nil
	}
	c := int(id % n)
	if c%gr.p.conns != gr.g {
		return nil
	}
	i := c / gr.p.conns
	if i >= len(gr.clients) {
		return nil
	}
	cl := gr.clients[i]
	if !cl.inflight || cl.id != id {
		return nil
	}
	return cl
}

// sendNext sends client cl's request for its next key (nothing when a preload
// client has written all of its keys).
func (gr *cmGroup) sendNext(cl *cmClient) error {
	idx, ok := gr.p.keyIndex(cl.c, cl.k)
	if !ok {
		return nil
	}
	cl.k++
	cl.idx = idx
	cl.write = gr.p.isWrite(&cl.rng)
	if cl.write {
		cl.seq++
	}
	return gr.send(cl)
}

// send encodes client cl's request (for key cl.idx; a retry keeps its seq)
// and sends it to the key's endpoint.
func (gr *cmGroup) send(cl *cmClient) error {
	p := gr.p
	id := cl.r*int64(p.clients) + int64(cl.c)
	cl.r++
	gr.buf.Reset()
	if err := gr.encode(id, cl.write, p.keys[cl.idx], cl); err != nil {
		return fmt.Errorf("encoding a request: %v", err)
	}
	cl.id, cl.inflight = id, true
	gr.inflight++
	cl.sent = time.Now()
	return gr.sockets[p.keyEndpoint[cl.idx]].send(gr.buf.Bytes())
}

// encode writes one request map (docs/protocol.md, Requests): keys and
// strings as str, value and client_id as bin.
func (gr *cmGroup) encode(id int64, write bool, key string, cl *cmClient) error {
	e := gr.enc
	p := gr.p
	var fields int
	switch {
	case write:
		fields = 8
	case p.op == "get" || p.op == "mix":
		fields = 4
	case p.op == "version":
		fields = 6
	default: // stale, serializable
		fields = 5
	}
	w := &errWriter{}
	w.do(e.EncodeMapLen(fields))
	w.str(e, "v")
	w.do(e.EncodeInt(1))
	w.str(e, "id")
	w.do(e.EncodeInt(id))
	w.str(e, "op")
	if write {
		w.str(e, "put")
	} else {
		w.str(e, "get")
	}
	w.str(e, "key")
	w.str(e, key)
	switch {
	case write:
		w.str(e, "value")
		w.do(e.EncodeBytes(nonNil(p.value)))
		w.str(e, "client_id")
		w.do(e.EncodeBytes(cl.clientID))
		w.str(e, "seq")
		w.do(e.EncodeInt(cl.seq))
		w.str(e, "ack") // closed loop: every earlier seq has had its reply
		w.do(e.EncodeInt(cl.seq))
	case p.op == "get" || p.op == "mix":
		// linearizable: the default
	case p.op == "version":
		w.str(e, "consistency")
		w.str(e, "version")
		w.str(e, "min_version")
		w.str(e, p.minVersion)
	default:
		w.str(e, "consistency")
		w.str(e, "stale")
	}
	return w.err
}

// nonNil: an empty value is encoded as empty bin, not nil.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

type errWriter struct{ err error }

func (w *errWriter) do(err error) {
	if w.err == nil {
		w.err = err
	}
}

func (w *errWriter) str(e *msgpack.Encoder, s string) { w.do(e.EncodeString(s)) }

// reply: the fields of a reply this generator reads (docs/protocol.md, Replies).
type reply struct {
	id        int64 // -1 if absent
	ok        bool
	code      string // error.code ("" when ok)
	message   string // error.message
	retryable bool   // error.retryable
}

// decodeReply reads id, ok and the error map of a reply and skips the rest.
func (gr *cmGroup) decodeReply(frame []byte) (r reply, err error) {
	gr.rd.Reset(frame)
	d := gr.dec
	d.Reset(&gr.rd)
	r.id = -1
	n, err := d.DecodeMapLen()
	if err != nil {
		return r, err
	}
	for i := 0; i < n; i++ {
		var name string
		if name, err = d.DecodeString(); err != nil {
			return r, err
		}
		switch name {
		case "id":
			r.id, err = d.DecodeInt64()
		case "ok":
			r.ok, err = d.DecodeBool()
		case "error":
			err = decodeError(d, &r)
		default:
			err = d.Skip()
		}
		if err != nil {
			return r, err
		}
	}
	if r.ok {
		r.code, r.message, r.retryable = "", "", false
	}
	return r, nil
}

func decodeError(d *msgpack.Decoder, r *reply) error {
	c, err := d.PeekCode()
	if err != nil {
		return err
	}
	if c == msgpcode.Nil {
		return d.DecodeNil()
	}
	n, err := d.DecodeMapLen()
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		name, err := d.DecodeString()
		if err != nil {
			return err
		}
		switch name {
		case "code":
			r.code, err = d.DecodeString()
		case "message":
			r.message, err = d.DecodeString()
		case "retryable":
			r.retryable, err = d.DecodeBool()
		default:
			err = d.Skip()
		}
		if err != nil {
			return err
		}
	}
	return nil
}
