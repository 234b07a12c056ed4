package events

// DecodeGeneral is the decoder of any JSON body, without the fast path.
var DecodeGeneral = decodeGeneral

// DecodeFast is the fast path alone.
var DecodeFast = decodeFast
