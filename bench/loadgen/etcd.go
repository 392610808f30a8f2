package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	etcdDialTimeout    = 5 * time.Second
	etcdRequestTimeout = 10 * time.Second
)

// runEtcd: M clientv3.Clients per endpoint, one goroutine per logical client;
// client c uses client c % M of its key's endpoint.
func runEtcd(p *plan) (*stats, windowSample, error) {
	if p.op == "version" {
		logf("note: etcd has no version-token read; -op version runs serializable gets")
	}
	if p.minVersion != "" {
		logf("note: -min-version is ignored for etcd")
	}
	// The client logs every failed attempt as a warning; errors are counted and
	// summarized here instead, so it only logs errors.
	logConfig := zap.NewProductionConfig()
	logConfig.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	logConfig.OutputPaths = []string{"stderr"}
	logConfig.ErrorOutputPaths = []string{"stderr"}
	conns := make([][]*clientv3.Client, len(p.endpoints))
	closeAll := func() {
		for _, cs := range conns {
			for _, c := range cs {
				c.Close()
			}
		}
	}
	for e, ep := range p.endpoints {
		for j := 0; j < p.conns; j++ {
			c, err := clientv3.New(clientv3.Config{
				Endpoints:   []string{ep},
				DialTimeout: etcdDialTimeout,
				LogConfig:   &logConfig,
				// Block in New until connected, so an unreachable endpoint fails here.
				DialOptions: []grpc.DialOption{grpc.WithBlock()},
			})
			if err != nil {
				closeAll()
				return nil, windowSample{}, fmt.Errorf("%w: cannot connect to etcd endpoint %s: %v", errUnreachable, ep, err)
			}
			conns[e] = append(conns[e], c)
		}
	}
	defer closeAll()

	value := string(p.value)
	root, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.schedule()
	done := make(chan struct{}) // closed when every client has returned
	var finished <-chan struct{}
	if p.preload {
		finished = done
	}
	window := watchWindow(p, finished)

	all := make([]*stats, p.clients)
	var wg sync.WaitGroup
	for c := 0; c < p.clients; c++ {
		st := newStats()
		all[c] = st
		wg.Add(1)
		go func(c int, st *stats) {
			defer wg.Done()
			etcdClient(p, root, conns, value, c, st)
		}(c, st)
	}

	// Wait for the clients to finish on their own, at most until the drain's end;
	// then cancel what is still in flight (those clients count it unanswered).
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Until(p.drainEnd)):
		cancel()
		<-done
	}
	w := <-window

	total := newStats()
	for _, st := range all {
		total.merge(st)
	}
	return total, w, nil
}

// etcdClient is one logical client's closed loop.
func etcdClient(p *plan, root context.Context, conns [][]*clientv3.Client, value string, c int, st *stats) {
	rng := newSplitmix64(p.seed, c)
	retry := false
	var idx int
	var write bool
	for k := int64(0); ; {
		if !time.Now().Before(p.windowEnd) {
			return
		}
		if !retry {
			var ok bool
			if idx, ok = p.keyIndex(c, k); !ok {
				return // a preload's keys are all written
			}
			k++
			write = p.isWrite(&rng)
		}
		retry = false
		cli := conns[p.keyEndpoint[idx]][c%p.conns]
		key := p.keys[idx]

		ctx, done := context.WithTimeout(root, etcdRequestTimeout)
		var err error
		sent := time.Now()
		switch {
		case write:
			_, err = cli.Put(ctx, key, value)
		case p.op == "get" || p.op == "mix":
			_, err = cli.Get(ctx, key) // linearizable: etcd's default
		default: // serializable, stale, version
			_, err = cli.Get(ctx, key, clientv3.WithSerializable())
		}
		received := time.Now()
		done()

		if err != nil && root.Err() != nil {
			st.unanswered++ // cut off at the end of the drain
			return
		}
		if received.After(p.drainEnd) {
			st.unanswered++
			return
		}
		code, message := "", ""
		if err != nil {
			code, message = etcdErrorCode(err), err.Error()
			if p.preload && received.Add(retryDelay).Before(p.windowEnd) {
				// The key must be written: try it again (a put of the same value is idempotent).
				st.retries++
				st.note(code, message)
				time.Sleep(retryDelay)
				retry = true
				continue
			}
		}
		st.record(p, received, received.Sub(sent), write, code, message)
	}
}

// etcdErrorCode: "timeout" for a deadline, else the gRPC code's name.
func etcdErrorCode(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	var withCode interface{ Code() codes.Code } // rpctypes.EtcdError
	if errors.As(err, &withCode) {
		return codeName(withCode.Code())
	}
	if s, ok := status.FromError(err); ok {
		return codeName(s.Code())
	}
	return "other"
}

func codeName(c codes.Code) string {
	if c == codes.DeadlineExceeded {
		return "timeout"
	}
	return c.String()
}
