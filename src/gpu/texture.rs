//! Linear storage textures: a 1-D array of texels laid out in rows of [`TEXELS_PER_ROW`], texel `t`
//! at `(t % TEXELS_PER_ROW, t / TEXELS_PER_ROW)`. Kernels that would otherwise load from storage
//! buffers in their inner loops read their weights and inputs from such textures bound read-only:
//! on CPU adapters (lavapipe) a storage-buffer load is a loop over the SIMD lanes, a storage-texture
//! load one vector fetch (about 30 times cheaper per value measured there).
//!
//! An input view is copied from the activation arena into its texture before the dispatch that
//! reads it, one image after another, each image starting on a row of its own; [`copies`] lists
//! the buffer-to-texture copies for one image (wgpu wants `bytes_per_row` a multiple of 256 when
//! more than one row is copied, so a view that does not fill its last row takes two copies).

/// Texels per texture row.
pub const TEXELS_PER_ROW: u32 = 4096;

/// `#import texel_at`: the WGSL function that maps texel `t` of a linear texture to its
/// coordinates (`TEXELS_PER_ROW` a power of two, so a mask and a shift).
pub fn texel_at_wgsl() -> String {
    const { assert!(TEXELS_PER_ROW.is_power_of_two()) };
    format!(
        "// Texel t of a linear texture (rows of {TEXELS_PER_ROW} texels).\nfn at(t: u32) -> vec2<u32> {{\n    return vec2<u32>(t & {}u, t >> {}u);\n}}\n",
        TEXELS_PER_ROW - 1,
        TEXELS_PER_ROW.trailing_zeros()
    )
}

/// The texel format of a linear texture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Texels {
    /// rgba32float: 4 consecutive values per texel (views must start on 16-byte boundaries).
    Vec4,
    /// r32float: one value per texel (any view).
    Scalar,
}

impl Texels {
    pub fn format(self) -> wgpu::TextureFormat {
        match self {
            Texels::Vec4 => wgpu::TextureFormat::Rgba32Float,
            Texels::Scalar => wgpu::TextureFormat::R32Float,
        }
    }

    /// Values per texel.
    pub fn lanes(self) -> u32 {
        match self {
            Texels::Vec4 => 4,
            Texels::Scalar => 1,
        }
    }

    /// Bytes per texel.
    pub fn bytes(self) -> u32 {
        match self {
            Texels::Vec4 => 16,
            Texels::Scalar => 4,
        }
    }

    /// Texels holding `values` values (the last one padded).
    pub fn texels(self, values: u32) -> u32 {
        values.div_ceil(self.lanes())
    }
}

/// Rows that `texels` texels take.
pub fn rows(texels: u32) -> u32 {
    texels.div_ceil(TEXELS_PER_ROW).max(1)
}

/// Texels from one image's start to the next: whole rows.
pub fn image_texels(format: Texels, values: u32) -> u32 {
    rows(format.texels(values)) * TEXELS_PER_ROW
}

/// One buffer-to-texture copy: bytes from `offset` into the rectangle at row `row`, `width` texels
/// wide and `height` rows high.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Copy {
    pub offset: u64,
    pub row: u32,
    pub width: u32,
    pub height: u32,
}

/// The copies that put `values` values starting at byte `offset` of a buffer into a linear texture
/// of `format`, from row `row` on.
pub fn copies(format: Texels, offset: u64, values: u32, row: u32) -> Vec<Copy> {
    let texels = format.texels(values);
    let full = texels / TEXELS_PER_ROW;
    let rest = texels % TEXELS_PER_ROW;
    let mut out = Vec::with_capacity(2);
    if full > 0 {
        out.push(Copy {
            offset,
            row,
            width: TEXELS_PER_ROW,
            height: full,
        });
    }
    if rest > 0 {
        out.push(Copy {
            offset: offset + u64::from(full * TEXELS_PER_ROW * format.bytes()),
            row: row + full,
            width: rest,
            height: 1,
        });
    }
    out
}

/// A linear texture of `rows` rows that kernels read as a storage texture and copies fill.
pub fn create(device: &wgpu::Device, label: &str, format: Texels, rows: u32) -> wgpu::Texture {
    device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d {
            width: TEXELS_PER_ROW,
            height: rows.max(1),
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: format.format(),
        usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_cover_whole_rows_then_the_rest() {
        // 4096 * 4 + 10 values as vec4 texels: one full row, then 3 texels (the last padded).
        let c = copies(Texels::Vec4, 64, 4096 * 4 + 10, 2);
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].offset, c[0].row, c[0].width, c[0].height),
            (64, 2, 4096, 1)
        );
        assert_eq!(
            (c[1].offset, c[1].row, c[1].width, c[1].height),
            (64 + 65536, 3, 3, 1)
        );
        // An exact number of rows is one copy; a short view one partial row.
        assert_eq!(copies(Texels::Scalar, 0, 8192, 0).len(), 1);
        let c = copies(Texels::Scalar, 4, 5, 7);
        assert_eq!((c[0].row, c[0].width, c[0].height), (7, 5, 1));
        assert_eq!(image_texels(Texels::Vec4, 4096 * 4 + 1), 2 * 4096);
        assert_eq!(image_texels(Texels::Scalar, 1), 4096);
    }
}
