package main

// A minimal cgo wrapper over libzmq 4.3: one context, DEALER sockets, one-frame
// sends and receives, and zmq_poll over a fixed set of sockets.
//
// Threading: a zmqContext may be shared by goroutines; a zmqSocket and a
// zmqPoller must only ever be used by the one goroutine that created them, and
// that goroutine must call runtime.LockOSThread first (ZeroMQ sockets are not
// thread-safe, and errno is read on the thread that made the call).
//
// Memory: everything handed to C is C memory (C.CString, C.CBytes, C.malloc)
// and is freed here; received frames are copied into Go memory with C.GoBytes
// before the zmq_msg_t that held them is closed.

/*
#cgo LDFLAGS: -lzmq
#include <errno.h>
#include <stdlib.h>
#include <zmq.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"syscall"
	"time"
	"unsafe"
)

// errAgain: a non-blocking receive found no frame waiting.
var errAgain = errors.New("zmq: no message available")

// zmqError is a failed libzmq call and the errno it left.
type zmqError struct {
	call  string
	errno syscall.Errno
}

func (e *zmqError) Error() string {
	return fmt.Sprintf("%s: %s", e.call, C.GoString(C.zmq_strerror(C.int(e.errno))))
}

// callError turns the error cgo returns with a failed call (errno) into a zmqError.
func callError(call string, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return &zmqError{call: call, errno: errno}
	}
	return fmt.Errorf("%s failed (errno not set)", call)
}

func isErrno(err error, want syscall.Errno) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && errno == want
}

type zmqContext struct {
	p unsafe.Pointer
}

func newZmqContext(ioThreads int) (*zmqContext, error) {
	p, err := C.zmq_ctx_new()
	if p == nil {
		return nil, callError("zmq_ctx_new", err)
	}
	if ioThreads > 0 {
		if rc, err := C.zmq_ctx_set(p, C.ZMQ_IO_THREADS, C.int(ioThreads)); rc != 0 {
			C.zmq_ctx_term(p)
			return nil, callError("zmq_ctx_set(ZMQ_IO_THREADS)", err)
		}
	}
	return &zmqContext{p: p}, nil
}

// term ends the context; every socket must have been closed first.
func (c *zmqContext) term() {
	for {
		rc, err := C.zmq_ctx_term(c.p)
		if rc == 0 || !isErrno(err, syscall.EINTR) {
			return
		}
	}
}

type zmqSocket struct {
	p   unsafe.Pointer
	msg *C.zmq_msg_t // C memory, reused by every receive
}

// dealer makes a DEALER socket with LINGER 0 (close drops what is unsent).
func (c *zmqContext) dealer() (*zmqSocket, error) {
	p, err := C.zmq_socket(c.p, C.ZMQ_DEALER)
	if p == nil {
		return nil, callError("zmq_socket(ZMQ_DEALER)", err)
	}
	s := &zmqSocket{p: p, msg: (*C.zmq_msg_t)(C.malloc(C.sizeof_zmq_msg_t))}
	if err := s.setInt(C.ZMQ_LINGER, 0, "ZMQ_LINGER"); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *zmqSocket) setInt(option C.int, value int, name string) error {
	v := (*C.int)(C.malloc(C.sizeof_int))
	defer C.free(unsafe.Pointer(v))
	*v = C.int(value)
	if rc, err := C.zmq_setsockopt(s.p, option, unsafe.Pointer(v), C.sizeof_int); rc != 0 {
		return callError("zmq_setsockopt("+name+")", err)
	}
	return nil
}

// unlimitedHWM lifts the send and receive high-water marks (0: no limit).
func (s *zmqSocket) unlimitedHWM() error {
	if err := s.setInt(C.ZMQ_SNDHWM, 0, "ZMQ_SNDHWM"); err != nil {
		return err
	}
	return s.setInt(C.ZMQ_RCVHWM, 0, "ZMQ_RCVHWM")
}

func (s *zmqSocket) connect(address string) error {
	cs := C.CString(address)
	defer C.free(unsafe.Pointer(cs))
	if rc, err := C.zmq_connect(s.p, cs); rc != 0 {
		return callError("zmq_connect("+address+")", err)
	}
	return nil
}

// send queues data as one frame (blocking only while the socket is at its high-water mark).
func (s *zmqSocket) send(data []byte) error {
	buf := C.CBytes(data) // zmq_send copies the bytes, so this can be freed on return
	defer C.free(buf)
	for {
		rc, err := C.zmq_send(s.p, buf, C.size_t(len(data)), 0)
		if rc >= 0 {
			return nil
		}
		if !isErrno(err, syscall.EINTR) {
			return callError("zmq_send", err)
		}
	}
}

// recvFrame receives one frame; more says whether another frame of the same
// message follows. Without block, it returns errAgain when nothing is waiting.
func (s *zmqSocket) recvFrame(block bool) (data []byte, more bool, err error) {
	flags := C.int(0)
	if !block {
		flags = C.ZMQ_DONTWAIT
	}
	for {
		if rc, err := C.zmq_msg_init(s.msg); rc != 0 {
			return nil, false, callError("zmq_msg_init", err)
		}
		n, err := C.zmq_msg_recv(s.msg, s.p, flags)
		if n < 0 {
			C.zmq_msg_close(s.msg)
			switch {
			case isErrno(err, syscall.EINTR):
				continue
			case isErrno(err, syscall.EAGAIN):
				return nil, false, errAgain
			default:
				return nil, false, callError("zmq_msg_recv", err)
			}
		}
		data = C.GoBytes(C.zmq_msg_data(s.msg), C.int(C.zmq_msg_size(s.msg)))
		more = C.zmq_msg_more(s.msg) != 0
		C.zmq_msg_close(s.msg)
		return data, more, nil
	}
}

// recv receives one whole message and returns its last frame (a reply to a
// one-frame request from a DEALER is one frame; anything before the last is
// envelope). Without block, it returns errAgain when nothing is waiting.
func (s *zmqSocket) recv(block bool) ([]byte, error) {
	data, more, err := s.recvFrame(block)
	for err == nil && more {
		// The rest of a message arrives with its first frame: no need to wait.
		data, more, err = s.recvFrame(true)
	}
	return data, err
}

func (s *zmqSocket) close() {
	if s.p != nil {
		C.zmq_close(s.p)
		s.p = nil
	}
	if s.msg != nil {
		C.free(unsafe.Pointer(s.msg))
		s.msg = nil
	}
}

// zmqPoller polls a fixed list of sockets for input.
type zmqPoller struct {
	items []C.zmq_pollitem_t // a view of C memory (base), not Go memory
	base  unsafe.Pointer
}

func newZmqPoller(sockets []*zmqSocket) *zmqPoller {
	n := len(sockets)
	base := C.calloc(C.size_t(n), C.sizeof_zmq_pollitem_t)
	items := unsafe.Slice((*C.zmq_pollitem_t)(base), n)
	for i, s := range sockets {
		items[i].socket = s.p
		items[i].events = C.ZMQ_POLLIN
	}
	return &zmqPoller{items: items, base: base}
}

// poll waits up to timeout for input on any socket and returns how many have
// some (0 on timeout or when a signal interrupted the wait).
func (p *zmqPoller) poll(timeout time.Duration) (int, error) {
	if timeout < 0 {
		timeout = 0
	}
	n, err := C.zmq_poll((*C.zmq_pollitem_t)(p.base), C.int(len(p.items)), C.long(timeout/time.Millisecond))
	if n < 0 {
		if isErrno(err, syscall.EINTR) {
			return 0, nil
		}
		return 0, callError("zmq_poll", err)
	}
	return int(n), nil
}

// readable: the last poll saw input on socket i.
func (p *zmqPoller) readable(i int) bool {
	return p.items[i].revents&C.ZMQ_POLLIN != 0
}

func (p *zmqPoller) free() {
	if p.base != nil {
		C.free(p.base)
		p.base = nil
		p.items = nil
	}
}
