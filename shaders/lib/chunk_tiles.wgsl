// The tiles of the vec4 texture families that run over a chunk's images (imported inside their
// entry points, after `q`, the texels of one image's plane): workgroup (y, z) takes tile z * Y + y
// (Y = grid.y, the tiles of one image) of the chunk's texels, one image after another, so a plane
// that is not a multiple of a tile leaves a part tile only at the chunk's end, and the workgroups
// past the last tile (one fewer than the images at most) return at once. Lane texel J is u<J> of
// that sequence: texel t<J> of image n<J> (past the last image for lanes past the chunk's texels,
// which pv<J> keeps from storing).
    let texels = grid.z * q;
    let fb = (id.wg.z * grid.y + id.wg.y) * #{SG * P}u;
    if (fb >= texels) {
        return;
    }
#for J in 0..P
    let u#{J} = fb + #{J * SG}u + id.lane;
    let n#{J} = u#{J} / q;
    let t#{J} = u#{J} - n#{J} * q;
    let pv#{J} = u#{J} < texels;
#endfor
