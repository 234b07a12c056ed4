package sqlitestore

import (
	"encoding/binary"
	"errors"
	"math"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/sensor"
)

// The outbox keeps each event in a compact binary form rather than its JSON
// body: the JSON of a 500-reading batch is ~75 KB (some twenty overflow pages
// written to the WAL per batch, and freed again when the event is
// acknowledged), the compact form is about a tenth of it. The JSON body is
// rebuilt with sensor.EventBody when the event is read back, so it is
// byte-for-byte the body the first answer carried.
//
// Layout, all integers as varints:
//
//	compactVersion
//	site               string index
//	nstrings, then each string: length, bytes
//	nreadings, then each reading:
//	  sensor_id, room_id, site, type, unit   string indexes
//	  value                                  8 bytes, IEEE 754, little-endian
//	  timestamp                              Unix ms, delta from the previous reading
//
// Rows written before this format hold the JSON body, which starts with '{'.
const compactVersion = 1

// encodeEvent writes the compact outbox entry of the readings a batch stored.
func encodeEvent(site string, stored []reading.Reading) []byte {
	index := make(map[string]uint64)
	var strs []string
	idx := func(s string) uint64 {
		i, ok := index[s]
		if !ok {
			i = uint64(len(strs))
			index[s] = i
			strs = append(strs, s)
		}
		return i
	}
	// Index every string first, so the table can be written before the readings.
	siteIdx := idx(site)
	for i := range stored {
		r := &stored[i]
		idx(r.SensorID)
		idx(r.RoomID)
		idx(r.Site)
		idx(r.Type)
		idx(r.Unit)
	}
	b := make([]byte, 0, 16+len(strs)*16+len(stored)*16)
	b = binary.AppendUvarint(b, compactVersion)
	b = binary.AppendUvarint(b, siteIdx)
	b = binary.AppendUvarint(b, uint64(len(strs)))
	for _, s := range strs {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(stored)))
	var prev int64
	for i := range stored {
		r := &stored[i]
		for _, s := range [...]string{r.SensorID, r.RoomID, r.Site, r.Type, r.Unit} {
			b = binary.AppendUvarint(b, index[s])
		}
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.Value))
		ms := r.Timestamp.UnixMilli()
		b = binary.AppendVarint(b, ms-prev)
		prev = ms
	}
	return b
}

var errBadEvent = errors.New("malformed outbox entry")

// eventBody returns the sensor.data.received body of an outbox entry: the
// stored JSON of an older row, or the JSON rebuilt from the compact form.
func eventBody(batchID string, stored []byte) ([]byte, error) {
	if len(stored) > 0 && stored[0] == '{' {
		return stored, nil
	}
	site, rs, err := decodeEvent(stored)
	if err != nil {
		return nil, err
	}
	return sensor.EventBody(batchID, site, rs), nil
}

// decodeEvent reads what encodeEvent wrote.
func decodeEvent(b []byte) (site string, rs []reading.Reading, err error) {
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			err = errBadEvent
			b = nil
			return 0
		}
		b = b[n:]
		return v
	}
	if uv() != compactVersion || err != nil {
		return "", nil, errBadEvent
	}
	siteIdx := uv()
	nstrs := uv()
	if err != nil || nstrs > uint64(len(b)) {
		return "", nil, errBadEvent
	}
	strs := make([]string, nstrs)
	for i := range strs {
		n := uv()
		if err != nil || n > uint64(len(b)) {
			return "", nil, errBadEvent
		}
		strs[i], b = string(b[:n]), b[n:]
	}
	str := func() string {
		i := uv()
		if i >= uint64(len(strs)) {
			err = errBadEvent
			return ""
		}
		return strs[i]
	}
	if siteIdx >= uint64(len(strs)) {
		return "", nil, errBadEvent
	}
	site = strs[siteIdx]
	nrs := uv()
	if err != nil || nrs > uint64(len(b)) {
		return "", nil, errBadEvent
	}
	rs = make([]reading.Reading, nrs)
	var ms int64
	for i := range rs {
		r := &rs[i]
		r.SensorID, r.RoomID, r.Site, r.Type, r.Unit = str(), str(), str(), str(), str()
		if err != nil || len(b) < 8 {
			return "", nil, errBadEvent
		}
		r.Value = math.Float64frombits(binary.LittleEndian.Uint64(b))
		b = b[8:]
		d, n := binary.Varint(b)
		if n <= 0 {
			return "", nil, errBadEvent
		}
		b = b[n:]
		ms += d
		r.Timestamp = time.UnixMilli(ms).UTC()
	}
	if len(b) != 0 {
		return "", nil, errBadEvent
	}
	return site, rs, nil
}
