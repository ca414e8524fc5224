//! The codec of every `router.v1` service: prost's, except that a message that cannot be
//! decoded is `INVALID_ARGUMENT` (prost's codec says `INTERNAL`, which tells a client sending
//! garbage that the server is at fault and invites a retry).
//!
//! Set in `build.rs` (`codec_path`), so it is used by the generated servers and clients alike;
//! on a client the same code names an answer it could not decode.
use std::marker::PhantomData;

use prost::Message;
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// [`ProstCodec`] with decode failures as `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct RouterCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for RouterCodec<T, U> {
    fn default() -> Self {
        RouterCodec { _types: PhantomData }
    }
}

impl<T, U> Codec for RouterCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RouterDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RouterDecoder(ProstCodec::<T, U>::default().decoder())
    }
}

/// prost's decoder, its failures re-coded.
#[derive(Debug, Clone)]
pub struct RouterDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for RouterDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|status| {
            Status::invalid_argument(format!("the message cannot be decoded: {}", status.message()))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
