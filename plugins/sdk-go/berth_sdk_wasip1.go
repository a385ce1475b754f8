//go:build wasip1

// berth_sdk_wasip1.go: the component glue for the WIT world
// berth:policy/policy@0.3.0, the canonical ABI of policy.wit by hand. Built
// only for wasip1 (berth plugin build); berth_sdk.go holds what a policy
// calls.
package main

import (
	"fmt"
	"unsafe"
)

//go:wasmimport berth:policy/host@0.3.0 log
func hostLog(level int32, ptr unsafe.Pointer, length int32)

func hostLogString(level int32, message string) {
	hostLog(level, unsafe.Pointer(unsafe.StringData(message)), int32(len(message)))
}

// Memory handed out by cabi_realloc or returned to berth, kept reachable
// until the next call (berth reads a result before it calls again).
var retained [][]byte

func alloc(size, align int) unsafe.Pointer {
	buf := make([]byte, size+align)
	retained = append(retained, buf)
	p := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	return unsafe.Pointer((p + uintptr(align) - 1) &^ (uintptr(align) - 1))
}

// Where cabi_realloc puts what berth passes in. berth calls cabi_realloc
// where the component may not call out (the canonical ABI forbids it while
// it lowers arguments), and a Go allocation there may start the garbage
// collector, which reads the clock, an import: a trap. So cabi_realloc
// only carves from this buffer, made ready at the end of the call before
// (where Go may call out), twice as large as the largest call so far.
var landing struct {
	buf  []byte
	used int
	peak int
}

func init() { landing.buf = make([]byte, 1<<20) }

// readyLanding runs once a call has copied its params: the buffer is free
// again, and grown if the call came close to filling it.
func readyLanding() {
	landing.peak = max(landing.peak, landing.used)
	if 2*landing.peak > len(landing.buf) {
		landing.buf = make([]byte, 2*landing.peak)
	}
	landing.used = 0
}

func land(size, align int) unsafe.Pointer {
	base := uintptr(unsafe.Pointer(unsafe.SliceData(landing.buf)))
	start := (base + uintptr(landing.used) + uintptr(align) - 1) &^ (uintptr(align) - 1)
	end := int(start-base) + size
	if end > len(landing.buf) {
		// Larger than ever before: a Go allocation, which traps only if it
		// starts a collection. The buffer grows after this call.
		landing.used = end
		return alloc(size, align)
	}
	landing.used = end
	return unsafe.Pointer(start)
}

//go:wasmexport cabi_realloc
func cabiRealloc(old unsafe.Pointer, oldSize, align, newSize int32) unsafe.Pointer {
	p := land(int(newSize), int(align))
	if old != nil && oldSize > 0 {
		copy(unsafe.Slice((*byte)(p), newSize), unsafe.Slice((*byte)(old), min(oldSize, newSize)))
	}
	return p
}

func lift(ptr unsafe.Pointer, length int32) string {
	return string(unsafe.Slice((*byte)(ptr), length)) // a copy, owned by Go
}

func liftOption(some int32, ptr unsafe.Pointer, length int32) *string {
	if some == 0 {
		return nil
	}
	s := lift(ptr, length)
	return &s
}

func lowerString(at unsafe.Pointer, s string) {
	data := []byte(s)
	retained = append(retained, data)
	*(*uint32)(at) = uint32(uintptr(unsafe.Pointer(unsafe.SliceData(data))))
	*(*uint32)(unsafe.Add(at, 4)) = uint32(len(data))
}

// startCall releases what the previous call kept: its params were copied
// into Go strings, and berth has read its result.
func startCall() {
	retained = retained[:0]
	readyLanding()
}

// guard turns a PolicyError or SettingsError into the WIT `err`, and a
// panic into a trap that berth reports with the logged message.
func guard(call func() error) (errText string, failed bool) {
	defer func() {
		if r := recover(); r != nil {
			LogError(fmt.Sprint("panic: ", r))
			panic(r)
		}
	}()
	if err := call(); err != nil {
		return err.Error(), true
	}
	return "", false
}

//go:wasmexport validate-settings
func exportValidateSettings(ptr unsafe.Pointer, length int32) unsafe.Pointer {
	settings := lift(ptr, length)
	startCall()
	result := alloc(12, 4)
	clear(unsafe.Slice((*byte)(result), 12))
	if plugin.parse == nil {
		panic("berth_sdk: no plugin: call ExportPlugin(evaluate) in init()")
	}
	if text, failed := guard(func() error { _, err := parsedSettings(settings); return err }); failed {
		*(*uint8)(result) = 1
		lowerString(unsafe.Add(result, 4), text)
	}
	return result
}

//go:wasmexport evaluate
func exportEvaluate(
	requestPtr unsafe.Pointer, requestLen int32,
	objectSome int32, objectPtr unsafe.Pointer, objectLen int32,
	oldSome int32, oldPtr unsafe.Pointer, oldLen int32,
	settingsPtr unsafe.Pointer, settingsLen int32,
	classSome int32, classPtr unsafe.Pointer, classLen int32,
) unsafe.Pointer {
	request, settings := lift(requestPtr, requestLen), lift(settingsPtr, settingsLen)
	object, old := liftOption(objectSome, objectPtr, objectLen), liftOption(oldSome, oldPtr, oldLen)
	context := Context{DefaultStorageClass: liftOption(classSome, classPtr, classLen)}
	startCall()

	// result<verdict, string>: tag @0; verdict @4 = decision tag @4,
	// payload @8 (deny: message @8, code @16; mutate: patch @8), warnings @20.
	result := alloc(28, 4)
	clear(unsafe.Slice((*byte)(result), 28))
	var verdict Verdict
	text, failed := guard(func() error {
		parsed, err := parsedSettings(settings)
		if err != nil {
			return err
		}
		req, err := ParseRequest(request, object, old, context)
		if err != nil {
			return err
		}
		verdict, err = plugin.evaluate(req, parsed)
		return err
	})
	if failed {
		*(*uint8)(result) = 1
		lowerString(unsafe.Add(result, 4), text)
		return result
	}
	switch verdict.Decision {
	case Deny:
		*(*uint8)(unsafe.Add(result, 4)) = 1
		lowerString(unsafe.Add(result, 8), verdict.Message)
		*(*uint16)(unsafe.Add(result, 16)) = verdict.Code
	case Mutate:
		*(*uint8)(unsafe.Add(result, 4)) = 2
		lowerString(unsafe.Add(result, 8), verdict.Patch.ToJSON())
	}
	if n := len(verdict.Warnings); n > 0 {
		list := alloc(8*n, 4)
		for i, warning := range verdict.Warnings {
			lowerString(unsafe.Add(list, 8*i), warning)
		}
		*(*uint32)(unsafe.Add(result, 20)) = uint32(uintptr(list))
		*(*uint32)(unsafe.Add(result, 24)) = uint32(n)
	}
	return result
}

// The adapter's memory while Go starts (see componentize-go.mjs): the WASI
// adapter allocates its state through cabi_realloc on its first call, which
// comes from inside Go's _initialize, before Go can run cabi_realloc. The
// marker lets the build find this array in the module's data; Go's linker
// leaves its zeros out of the file.
const adapterArenaSize = 1 << 20

var adapterArena = [adapterArenaSize]byte{'b', 'e', 'r', 't', 'h', '-', 'a', 'd', 'a', 'p', 't', 'e', 'r', '-', 'a', 'r', 'e', 'n', 'a', ':',
	adapterArenaSize & 0xff, adapterArenaSize >> 8 & 0xff, adapterArenaSize >> 16 & 0xff, adapterArenaSize >> 24 & 0xff}

var keepAdapterArena *[adapterArenaSize]byte

func init() { keepAdapterArena = &adapterArena }
