"""Measures of the mouth interior seen from outside (tests/test_mouth.py, benchmarks).

``measure(model, assets, shape, jaw, tongue_out)`` poses a FLAME head and its placed mouth
(numpy LBS, the paper's equations) and ray-casts them (backend.fit.render.rasterize) from 9
views (yaw 0/+-35 deg x pitch 0/+-25 deg, 384 px, 0.25 m): per view the mouth pixels that
are visible, the *poke* pixels (a visible mouth part with the outside of the skin behind
it, or outside the head's silhouette; the lips' inner pocket, within 5 edges of the inner
lip ring, does not count as outside) and how far in front of that skin the part lies (mm).
Pokes with the skin more than 20 mm behind are rays that went into the open mouth and hit
a nostril or ear pocket from inside, not parts outside the head.
"""
from __future__ import annotations

import numpy as np
import torch
from backend.model.flame import load_flame
from backend.model.assets import flame_model_path
from backend.model import mouth as M
from backend.files.bundle import flame_forward_np, rodrigues_np
from backend.fit.render import rasterize

def joint_transforms(model, shape, pose):
    v_neutral = model.v_template + model.shapedirs[:, :, :len(shape)] @ shape
    rest = model.J_regressor @ v_neutral
    rot = rodrigues_np(pose); parents=[int(p) for p in model.parents]
    world=np.zeros((5,4,4))
    for j in range(5):
        L=np.eye(4); L[:3,:3]=rot[j]; L[:3,3]=rest[j]-(rest[parents[j]] if parents[j]>=0 else 0)
        world[j]=L if parents[j]<0 else world[parents[j]]@L
    skin=world.copy(); skin[:,:3,3]-=np.einsum('jrc,jc->jr',world[:,:3,:3],rest)
    return skin

def lbs(skin, w, v):
    B=np.einsum('vj,jrc->vrc',w,skin)
    return np.einsum('vrc,vc->vr',B[:,:3,:3],v)+B[:,:3,3]

def in_poly(px, poly):
    x,y=px[:,0][:,None],px[:,1][:,None]
    x1,y1=poly[:,0][None],poly[:,1][None]; x2,y2=np.roll(poly[:,0],-1)[None],np.roll(poly[:,1],-1)[None]
    c=((y1>y)!=(y2>y)) & (x < (x2-x1)*(y-y1)/(y2-y1+1e-12)+x1)
    return c.sum(1)%2==1

import scipy.sparse as sp
from scipy.sparse.csgraph import shortest_path
def pocket_faces(F):
    r=np.concatenate([F[:,0],F[:,1],F[:,2]]); c=np.concatenate([F[:,1],F[:,2],F[:,0]])
    A=sp.coo_matrix((np.ones(len(r)),(r,c)),shape=(5023,5023)).tocsr(); A=((A+A.T)>0).astype(float)
    ring=list(M.LIP_RINGS['inner_upper'])+list(M.LIP_RINGS['inner_lower'])
    d=shortest_path(A,unweighted=True,indices=ring).min(0)
    return (d[F]<=5).all(1)
POCKET=None
def views():
    out=[]
    for yaw in (0,-35,35):
        for pitch in (0,-25,25):
            out.append((yaw,pitch))
    return out

def measure(model, assets, shape, jaw=0.0, expr=None, tongue_out=0.0, size=384, verbose=False):
    geo=M.place_mouth(assets, model.v_template+model.shapedirs[:,:,:len(shape)]@shape, model.weights, model.joint_names)
    pose=np.zeros((5,3)); pose[2,0]=jaw
    E=np.zeros(model.exprdirs.shape[2]) if expr is None else expr
    out=flame_forward_np(model, shape, E, pose)
    # head tongueOut key: add delta before pose: approximate by adding posed delta via LBS rotation
    head=out.vertices
    skin=joint_transforms(model, shape, pose)
    if tongue_out:
        vs = out.v_shaped + tongue_out*geo.head_tongue_out
        feat=(rodrigues_np(pose)[1:]-np.eye(3)).reshape(-1)
        head = lbs(skin, model.weights, vs + model.posedirs@feat)
    parts={}
    for k,p in geo.parts.items():
        v=p.verts + (tongue_out*geo.tongue_out if k=='tongue' else 0)
        parts[k]=lbs(skin,p.weights,v)
    ring=np.concatenate([head[list(M.LIP_RINGS['inner_upper'])], head[list(M.LIP_RINGS['inner_lower'])][::-1]])
    mverts=np.concatenate([parts[k] for k in M.PARTS]); off=0; mf=[]
    for k in M.PARTS:
        mf.append(geo.parts[k].faces+off); off+=len(parts[k])
    mfaces=np.concatenate(mf)
    global POCKET
    global HEADF
    if POCKET is None:
        HEADF=model.faces[(model.faces<3931).all(1)]; POCKET=pocket_faces(HEADF)
    res={}
    f=size*2.0; cx=cy=size/2
    centre=np.array([0,-0.045,0.03])
    for yaw,pitch in views():
        R=rodrigues_np(np.array([np.radians(pitch),0,0]))@rodrigues_np(np.array([0,np.radians(yaw),0]))
        T=lambda p:(p-centre)@R.T+np.array([0,0,-0.25])
        hv=torch.tensor(T(head)[None],dtype=torch.float32); mv=torch.tensor(T(mverts)[None],dtype=torch.float32)
        fh=rasterize(hv, torch.tensor(HEADF), f,cx,cy,size,size)
        fm=rasterize(mv, torch.tensor(mfaces), f,cx,cy,size,size)
        dh=fh.depth[0].numpy(); dm=fm.depth[0].numpy(); mh=fh.mask[0].numpy(); mm=fm.mask[0].numpy()
        vis=mm & (~mh | (dm<dh))
        rp=T(ring); u=cx+f*rp[:,0]/(-rp[:,2]); v=cy-f*rp[:,1]/(-rp[:,2])
        ii,jj=np.nonzero(vis)
        hv_np=T(head); fidx=fh.face_idx[0].numpy()
        tri=hv_np[HEADF[np.maximum(fidx,0)]]
        nrm=np.cross(tri[...,1,:]-tri[...,0,:], tri[...,2,:]-tri[...,0,:])
        I,J=np.mgrid[0:size,0:size]
        dirs=np.stack([(J+0.5-cx)/f,(cy-I-0.5)/f,-np.ones_like(I,float)],-1)
        front=(nrm*dirs).sum(-1)<0
        skin_front = mh & front & ~POCKET[np.maximum(fidx,0)]
        from scipy.ndimage import binary_fill_holes
        pokem = vis & (~binary_fill_holes(mh) | skin_front)
        depth=np.where(mh, dh-dm, np.inf)[pokem]
        poke=pokem[ii,jj]
        # depth along ray in units of |dir| (z=-1 ray => ~ z distance)
        back=mh & ((nrm*dirs).sum(-1)>0) & ~(mm & (dm<dh))
        allpix=np.stack([J.ravel()+0.5,I.ravel()+0.5],1)
        inring=in_poly(allpix,np.stack([u,v],1)).reshape(size,size)
        leak=int((back & inring).sum())
        res[(yaw,pitch)]=(int(vis.sum()), int(poke.sum()), float(depth.max()*1000) if len(depth) else 0.0, leak)
    return res, geo

